// The bell (BEL): no sound; the terminal flashes for a moment and the tab's title gets a
// 🔔 mark, which stays while the tab is hidden (so a bell in a background tab is seen
// when you look at the tabs) and goes a moment after it is shown. While it rings,
// `document.body.dataset.bell` is "ringing" (style.css flashes the terminal on it).

const RING_MS = 1200;
export const BELL_MARK = "🔔 ";

export class Bell {
  private timer: number | undefined;
  private rings = 0;

  constructor() {
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.ringing()) {
        this.schedule();
      }
    });
  }

  ring(): void {
    this.rings += 1;
    document.body.dataset.bell = "ringing";
    document.body.dataset.bells = String(this.rings);
    if (!document.title.startsWith(BELL_MARK)) {
      document.title = BELL_MARK + document.title;
    }
    if (document.hidden) {
      window.clearTimeout(this.timer); // until the tab is looked at
    } else {
      this.schedule();
    }
  }

  private ringing(): boolean {
    return document.body.dataset.bell === "ringing";
  }

  private schedule(): void {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.stop(), RING_MS);
  }

  private stop(): void {
    delete document.body.dataset.bell;
    if (document.title.startsWith(BELL_MARK)) {
      document.title = document.title.slice(BELL_MARK.length);
    }
  }
}
