// OSC 52 (a program in the terminal sets the clipboard: `printf '\e]52;c;%s\a' BASE64`,
// as tmux, vim's osc52 plugins and neovim do): written only while this page has the
// focus, so output arriving in a background tab cannot overwrite what the user copied
// elsewhere. Reading the clipboard (the "?" query) is never answered: a program on the
// shell must not see what the user copied in other windows.
import type { Terminal } from "@xterm/xterm";

const MAX_TEXT = 1024 * 1024; // characters: a bigger copy is refused, not cut

/** The text an OSC 52 payload ("c;BASE64", selection letters then data) sets, or null
 * for a query, an empty or invalid payload, or one too big. */
export function osc52Text(payload: string): string | null {
  const semicolon = payload.indexOf(";");
  if (semicolon < 0) {
    return null;
  }
  const data = payload.slice(semicolon + 1).replace(/\s/g, "");
  if (data === "" || data === "?" || data.length > (MAX_TEXT * 4) / 3 + 4) {
    return null;
  }
  let binary: string;
  try {
    binary = atob(data);
  } catch {
    return null;
  }
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

/** Handle OSC 52 in `term`. The outcome of each request is `document.body.dataset.osc52`
 * ("copied", "refused": the page had not the focus, "failed": the browser said no,
 * "ignored": a query or a malformed payload). */
export function handleOsc52(term: Terminal): void {
  term.parser.registerOscHandler(52, (payload) => {
    const text = osc52Text(payload);
    const outcome = (value: string): void => {
      document.body.dataset.osc52 = value;
    };
    if (text === null) {
      outcome("ignored");
    } else if (!document.hasFocus()) {
      outcome("refused");
    } else if (!navigator.clipboard) {
      outcome("failed"); // not a secure context (https or localhost)
    } else {
      navigator.clipboard.writeText(text).then(
        () => outcome("copied"),
        () => outcome("failed"),
      );
    }
    return true; // handled: xterm.js has no other use for it
  });
}
