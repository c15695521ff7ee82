// What the page shows besides the terminal: the status line, the overlay card, the banner
// and the title. Element ids and data-state attributes are what style.css and the browser
// tests (tests/browser/) look for; the `webterm:state` event fires on every state change.
import { BELL_MARK } from "./bell";
import type { Phase } from "./machine";

const $ = (id: string): HTMLElement => document.getElementById(id) as HTMLElement;

export function renderState(phase: Phase, text: string, changed: boolean): void {
  const status = $("status");
  status.dataset.state = phase;
  status.textContent = text;
  document.body.dataset.state = phase;
  if (changed) {
    window.dispatchEvent(new CustomEvent("webterm:state", { detail: { state: phase } }));
  }
}

/** A card over the terminal; its button hides it, then calls `action`. */
export function showOverlay(title: string, text: string, button: string, action: () => void): void {
  $("overlay-title").textContent = title;
  $("overlay-text").textContent = text;
  const btn = $("overlay-button") as HTMLButtonElement;
  btn.hidden = false;
  btn.textContent = button;
  btn.onclick = () => {
    hideOverlay();
    action();
  };
  $("overlay").hidden = false;
  btn.focus();
}

export function hideOverlay(): void {
  $("overlay").hidden = true;
}

export function showBanner(text: string, button: string, action: () => void): void {
  $("banner-text").textContent = text;
  const btn = $("banner-button") as HTMLButtonElement;
  btn.textContent = button;
  btn.onclick = action;
  $("banner").hidden = false;
}

export function hideBanner(): void {
  $("banner").hidden = true;
}

/** The shell's title (OSC 0/2), in the bar and the tab (keeping a ringing bell's mark). */
export function setTitle(title: string): void {
  const mark = document.title.startsWith(BELL_MARK) ? BELL_MARK : "";
  document.title = mark + (title ? `${title} — webterm` : "webterm");
  $("title").textContent = title;
}

export function terminalElement(): HTMLElement {
  return $("terminal");
}
