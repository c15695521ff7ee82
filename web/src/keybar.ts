// The key bar (#keybar) for a touch device without a hardware keyboard: the keys an
// on-screen keyboard lacks — Esc, Tab, sticky Ctrl and Alt, arrows, | ~ /, paste.
// It shows while the terminal has the focus on a coarse pointer (a finger), and sits at
// the bottom of the page, which follows the visual viewport (viewport.ts): right above
// the on-screen keyboard. Tapping a key keeps the focus (and the keyboard) where it is.
//
// Ctrl and Alt latch: tapped, the button shows pressed (aria-pressed="true") and the
// next key — one from the on-screen keyboard or the bar — is sent with it, then it
// releases; tapped again before that, it releases.
import type { Terminal } from "@xterm/xterm";
import { type Arrow, type Modifiers, NO_MODIFIERS, applyModifiers, arrowKey } from "./keys";

const KEYS: Record<string, string> = { esc: "\x1b", tab: "\t", "|": "|", "~": "~", "/": "/" };
const ARROWS: ReadonlySet<string> = new Set(["up", "down", "left", "right"]);

export class KeyBar {
  private modifiers: Modifiers = NO_MODIFIERS;
  private readonly bar = document.getElementById("keybar") as HTMLElement;
  private focused = false;

  constructor(private readonly term: Terminal) {
    for (const button of this.bar.querySelectorAll<HTMLButtonElement>("button[data-key]")) {
      // no focus change on the tap: the terminal keeps it, the keyboard stays open
      button.addEventListener("pointerdown", (event) => event.preventDefault());
      button.addEventListener("mousedown", (event) => event.preventDefault());
      button.addEventListener("click", () => this.press(button.dataset.key ?? ""));
    }
    const coarse = window.matchMedia("(pointer: coarse)");
    coarse.addEventListener("change", () => this.show(coarse.matches));
    const textarea = term.textarea;
    textarea?.addEventListener("focus", () => {
      this.focused = true;
      this.show(coarse.matches);
    });
    textarea?.addEventListener("blur", (event) => {
      if (!(event.relatedTarget instanceof Node && this.bar.contains(event.relatedTarget))) {
        this.focused = false;
        this.show(coarse.matches);
      }
    });
  }

  /** What the terminal sends (typed on the on-screen keyboard) with the latched
   * modifiers applied; they release once used. */
  apply(data: string): string {
    const { data: out, used } = applyModifiers(data, this.modifiers);
    if (used) {
      this.latch(NO_MODIFIERS);
    }
    return out;
  }

  private show(coarse: boolean): void {
    this.bar.hidden = !(coarse && this.focused);
  }

  private press(key: string): void {
    if (key === "ctrl" || key === "alt") {
      this.latch({ ...this.modifiers, [key]: !this.modifiers[key] });
    } else if (key === "paste") {
      this.latch(NO_MODIFIERS);
      void this.paste();
    } else if (ARROWS.has(key)) {
      const data = arrowKey(key as Arrow, this.term.modes.applicationCursorKeysMode, this.modifiers);
      this.latch(NO_MODIFIERS);
      this.term.input(data, true);
    } else if (key in KEYS) {
      const data = this.apply(KEYS[key]);
      this.term.input(data, true);
    }
    this.term.focus();
  }

  /** The clipboard, pasted as if typed (bracketed when the program asked for it).
   * `data-paste` on the bar tells how the last one went: "pasted", "empty", "refused". */
  private async paste(): Promise<void> {
    delete this.bar.dataset.paste;
    try {
      const text = await navigator.clipboard.readText();
      if (text) {
        this.term.paste(text);
      }
      this.bar.dataset.paste = text ? "pasted" : "empty";
    } catch (error) {
      this.bar.dataset.paste = "refused";
      console.warn("webterm: the clipboard cannot be read here:", error);
    }
  }

  private latch(modifiers: Modifiers): void {
    this.modifiers = modifiers;
    for (const name of ["ctrl", "alt"] as const) {
      const button = this.bar.querySelector(`button[data-key="${name}"]`);
      button?.setAttribute("aria-pressed", String(modifiers[name]));
    }
  }
}
