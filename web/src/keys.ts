// What keys mean, without the DOM: the key bar's sticky Ctrl and Alt, its arrows (in
// either cursor-key mode), and the page's own shortcuts (search, font size).

/** The key bar's sticky modifiers: each applies to the next key, then releases. */
export interface Modifiers {
  readonly ctrl: boolean;
  readonly alt: boolean;
}

export const NO_MODIFIERS: Modifiers = { ctrl: false, alt: false };

/** The control character Ctrl+`key` sends (as xterm does), or null when there is none. */
export function ctrlChar(key: string): string | null {
  if (key.length !== 1) {
    return null;
  }
  const code = key.toUpperCase().charCodeAt(0);
  if (code >= 0x40 && code <= 0x5f) {
    return String.fromCharCode(code - 0x40); // @ A..Z [ \ ] ^ _
  }
  const others: Record<string, string> = {
    " ": "\x00", "2": "\x00", "3": "\x1b", "4": "\x1c", "5": "\x1d",
    "6": "\x1e", "~": "\x1e", "7": "\x1f", "-": "\x1f", "/": "\x1f", "8": "\x7f", "?": "\x7f",
  }; // prettier-ignore
  return others[key] ?? null;
}

/** What to send for `data` (what the terminal would send for a key, or a pasted or
 * composed text) with the sticky `modifiers`, and whether they are used up by it.
 * Ctrl turns the first character into its control character; Alt puts ESC before.
 * Sequences the terminal sends by itself (reports, mouse: they start with ESC and are
 * longer than one byte) pass through untouched and leave the modifiers latched. */
export function applyModifiers(data: string, modifiers: Modifiers): { data: string; used: boolean } {
  if (!modifiers.ctrl && !modifiers.alt) {
    return { data, used: false };
  }
  if (data.length === 0 || (data.length > 1 && data.startsWith("\x1b"))) {
    return { data, used: false };
  }
  let out = data;
  if (modifiers.ctrl) {
    const first = String.fromCodePoint(data.codePointAt(0) ?? 0);
    const control = ctrlChar(first);
    if (control !== null) {
      out = control + data.slice(first.length);
    }
  }
  return { data: modifiers.alt ? `\x1b${out}` : out, used: true };
}

export type Arrow = "up" | "down" | "right" | "left";

const ARROW_LETTER: Record<Arrow, string> = { up: "A", down: "B", right: "C", left: "D" };

/** The bytes of an arrow key: ESC O A in application cursor mode (DECCKM, as in vim or
 * less), ESC [ A otherwise; with modifiers always CSI 1;m A (xterm's modifyCursorKeys). */
export function arrowKey(arrow: Arrow, applicationCursor: boolean, modifiers: Modifiers = NO_MODIFIERS): string {
  const letter = ARROW_LETTER[arrow];
  if (modifiers.ctrl || modifiers.alt) {
    return `\x1b[1;${1 + (modifiers.alt ? 2 : 0) + (modifiers.ctrl ? 4 : 0)}${letter}`;
  }
  return applicationCursor ? `\x1bO${letter}` : `\x1b[${letter}`;
}

export type Shortcut = "search" | "font-larger" | "font-smaller" | "font-reset";

/** The page's own keys, taken before the shell sees them: Ctrl+Shift+F searches the
 * scrollback, Ctrl+= / Ctrl+- / Ctrl+0 change the font size (instead of the browser's
 * zoom). Everything else is the terminal's. */
export function shortcut(event: {
  key: string;
  ctrlKey: boolean;
  shiftKey: boolean;
  altKey: boolean;
  metaKey: boolean;
}): Shortcut | null {
  if (!event.ctrlKey || event.altKey || event.metaKey) {
    return null;
  }
  if (event.shiftKey && event.key.toLowerCase() === "f") {
    return "search";
  }
  switch (event.key) {
    case "=":
    case "+":
      return "font-larger";
    case "-":
      return event.shiftKey ? null : "font-smaller";
    case "0":
      return event.shiftKey ? null : "font-reset";
    default:
      return null;
  }
}
