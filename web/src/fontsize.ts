// The terminal's font size: A−/A+ in the bar, Ctrl+= / Ctrl+- / Ctrl+0, a two-finger
// pinch on the terminal; kept per browser (localStorage), so a reload or a new tab keeps it.

export const DEFAULT_FONT_SIZE = 14;
export const MIN_FONT_SIZE = 8;
export const MAX_FONT_SIZE = 32;
const STORAGE_KEY = "webterm.fontSize";

/** A usable font size from anything (a stored string, a pinch's scaled size). */
export function clampFontSize(value: unknown): number {
  const size = Math.round(Number(value));
  if (!Number.isFinite(size) || size <= 0) {
    return DEFAULT_FONT_SIZE;
  }
  return Math.min(MAX_FONT_SIZE, Math.max(MIN_FONT_SIZE, size));
}

/** localStorage, or null where it is refused (a sandboxed frame, some private modes). */
function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

export class FontSize {
  private size: number;

  /** `apply` sets the terminal's font size and fits it to its element again. */
  constructor(private readonly apply: (size: number) => void) {
    this.size = clampFontSize(storage()?.getItem(STORAGE_KEY) ?? DEFAULT_FONT_SIZE);
    apply(this.size);
    document.body.dataset.fontSize = String(this.size);
  }

  get(): number {
    return this.size;
  }

  set(value: number): void {
    const size = clampFontSize(value);
    if (size === this.size) {
      return;
    }
    this.size = size;
    this.apply(size);
    try {
      storage()?.setItem(STORAGE_KEY, String(size));
    } catch {
      // full or refused: the size still holds for this page
    }
    document.body.dataset.fontSize = String(size);
  }

  larger(): void {
    this.set(this.size + 1);
  }

  smaller(): void {
    this.set(this.size - 1);
  }

  reset(): void {
    this.set(DEFAULT_FONT_SIZE);
  }

  /** A two-finger pinch on `element` scales the font (and not the page). */
  pinch(element: HTMLElement): void {
    let start: { distance: number; size: number } | null = null;
    const distance = (touches: TouchList): number =>
      Math.hypot(touches[0].clientX - touches[1].clientX, touches[0].clientY - touches[1].clientY);
    element.addEventListener(
      "touchstart",
      (event) => {
        start = event.touches.length === 2 ? { distance: distance(event.touches), size: this.size } : null;
      },
      { passive: true },
    );
    element.addEventListener(
      "touchmove",
      (event) => {
        if (start === null || event.touches.length !== 2 || start.distance === 0) {
          return;
        }
        event.preventDefault(); // no page zoom, no scroll: this gesture is ours
        this.set(start.size * (distance(event.touches) / start.distance));
      },
      { passive: false },
    );
    const end = (event: TouchEvent): void => {
      if (event.touches.length < 2) {
        start = null;
      }
    };
    element.addEventListener("touchend", end, { passive: true });
    element.addEventListener("touchcancel", end, { passive: true });
  }
}
