// One terminal per tab: the tab's id, the check that a duplicated tab's id is not a copy,
// and the question before leaving a tab with a shell attached.
//
// A duplicated tab ("Duplicate tab", window.open) starts with a copy of sessionStorage and
// so with this tab's id: it would take this tab's terminal over. At load, a tab that has
// an id asks the others whether one of them holds it; if one answers, the id is a copy and
// the new tab asks for a terminal of its own. A reload has no such twin: the old page is
// gone before the new one asks.

const CLIENT_KEY = "webterm.client"; // per tab: sessionStorage survives reloads, not new tabs
const TABS_CHANNEL = "webterm.tabs"; // BroadcastChannel between this origin's tabs
const DUPLICATE_PROBE_MS = 100; // how long a duplicated tab waits for its original to answer

/** The tab's id, as the webserver handed it out (tab identity mode). */
export const tabId = {
  get: (): string | null => sessionStorage.getItem(CLIENT_KEY),
  set: (client: string): void => sessionStorage.setItem(CLIENT_KEY, client),
  forget: (): void => sessionStorage.removeItem(CLIENT_KEY),
};

export class Tabs {
  private readonly channel = typeof BroadcastChannel === "function" ? new BroadcastChannel(TABS_CHANNEL) : null;
  private holdsId = false; // false while this tab is still asking whether its id is a copy
  private onOwner: ((client: string) => void) | null = null;

  constructor() {
    if (this.channel !== null) {
      this.channel.onmessage = (event: MessageEvent) => this.heard(event.data);
    }
  }

  /** Resolves once this tab's id is its own: kept, or dropped because another tab has it. */
  claimId(): Promise<void> {
    const client = tabId.get();
    const channel = this.channel;
    if (channel === null || !client) {
      this.holdsId = true;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (copied: boolean): void => {
        window.clearTimeout(wait);
        this.onOwner = null;
        if (copied) {
          tabId.forget(); // the server gives this tab its own
        }
        this.holdsId = true;
        resolve();
      };
      const wait = window.setTimeout(() => done(false), DUPLICATE_PROBE_MS);
      this.onOwner = (owner) => {
        if (owner === client) {
          done(true);
        }
      };
      channel.postMessage({ type: "who-has", client });
    });
  }

  private heard(data: unknown): void {
    const message = data as { type?: unknown; client?: unknown } | null;
    const client = typeof message?.client === "string" ? message.client : null;
    if (client === null) {
      return;
    }
    if (message?.type === "who-has" && this.holdsId && client === tabId.get()) {
      this.channel?.postMessage({ type: "mine", client });
    } else if (message?.type === "mine") {
      this.onOwner?.(client);
    }
  }
}

/** Closing the tab (or Ctrl+W, which the browser takes before the shell sees it) asks
 * first while `attached()`. Browsers show their own text, and only after the user has
 * interacted with the page. */
export function askBeforeLeaving(attached: () => boolean): void {
  window.addEventListener("beforeunload", (event) => {
    if (attached()) {
      event.preventDefault();
      event.returnValue = ""; // older Chromium needs it set
    }
  });
}
