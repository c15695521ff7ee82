// Sharing the terminal: the owner's "share" panel (make a link, view only or can type;
// see who is attached; revoke a link) and a viewer's side (the link's token, the badge).
//
// A link is this page's URL with a share token in the fragment (#share=TOKEN): the
// fragment never reaches a server's logs. A viewer's page sends the token to
// POST /api/terminal/shared, whose answer has the shape of POST /api/terminal's, so the
// page connects a viewer as it connects an owner. The terminal server is the authority:
// it refuses a view-only viewer's keys, ignores its resize and closes a revoked link's
// viewers (4410); the page only shows what it is told.
import { type Allocation, type Refusal, type Role, type Viewer, decodeAnswer, encodeRevoke } from "./protocol";

const REQUEST_TIMEOUT_MS = 20_000;
export const SHARE_PARAM = "share";

/** The share token this page was opened with (#share=TOKEN), or null: the owner's page. */
export function sharedToken(hash: string = location.hash): string | null {
  const token = new URLSearchParams(hash.replace(/^#/, "")).get(SHARE_PARAM);
  return token ? token : null;
}

/** POST /api/terminal/shared: where a viewer dials, with its link's token. */
export async function requestShared(token: string): Promise<Allocation | Refusal> {
  const response = await fetch("/api/terminal/shared", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
    credentials: "same-origin",
    cache: "no-store",
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const body: unknown = await response.json().catch(() => ({}));
  return decodeAnswer(response.status, body, response.headers.get("Retry-After"));
}

export type Mode = "view" | "type";

/** A link this page made: its id, what it allows, the URL to hand out. */
export interface Link {
  readonly link: string;
  readonly mode: Mode;
  readonly url: string;
}

const $ = (id: string): HTMLElement => document.getElementById(id) as HTMLElement;

/** What a link allows, in words. */
export function describe(mode: Mode): string {
  return mode === "view" ? "view only" : "can type";
}

/** The owner's share panel: the bar's "share" button, the links made here, the viewers. */
export class SharePanel {
  private readonly links = new Map<string, Link>(); // made here, not revoked
  private viewers: readonly Viewer[] = [];
  private shown: string | null = null; // the link in the panel's box

  constructor(
    private readonly client: () => string | null,
    private readonly send: (text: string) => boolean,
  ) {
    $("share-button").hidden = false;
    $("share-button").addEventListener("click", () => this.toggle());
    $("share-close").addEventListener("click", () => this.toggle(false));
    $("share-view").addEventListener("click", () => void this.make("view"));
    $("share-type").addEventListener("click", () => void this.make("type"));
    $("share-copy").addEventListener("click", () => this.copy());
    this.render();
  }

  toggle(open: boolean = $("share").hidden === true): void {
    $("share").hidden = !open;
  }

  /** The terminal server's `viewers` message: who is attached now. */
  update(viewers: readonly Viewer[]): void {
    this.viewers = viewers;
    this.render();
  }

  /** Ask for a link; it is shown, selected, ready to copy. */
  async make(mode: Mode): Promise<Link | null> {
    const note = $("share-note");
    note.textContent = "making a link…";
    let answer: Response;
    try {
      const client = this.client();
      answer = await fetch("/api/terminal/share", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(client ? { mode, client } : { mode }),
        credentials: "same-origin",
        cache: "no-store",
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch {
      note.textContent = "cannot reach the server";
      return null;
    }
    const body = (await answer.json().catch(() => ({}))) as Record<string, unknown>;
    if (!answer.ok || typeof body.token !== "string" || typeof body.link !== "string") {
      note.textContent = String(body.error || `HTTP ${answer.status}`);
      return null;
    }
    const url = `${location.origin}${location.pathname}#${SHARE_PARAM}=${body.token}`;
    const made: Link = { link: body.link, mode, url };
    this.links.set(made.link, made);
    const input = $("share-link") as HTMLInputElement;
    input.value = url;
    input.dataset.mode = mode;
    this.shown = made.link;
    $("share-made").hidden = false;
    note.textContent = `a ${describe(mode)} link: whoever opens it joins this terminal`;
    input.select();
    this.render();
    return made;
  }

  /** Close the link's viewers now and refuse it from now on. */
  revoke(link: string): boolean {
    if (!this.send(encodeRevoke(link))) {
      return false;
    }
    this.links.delete(link);
    if (this.shown === link) {
      $("share-made").hidden = true;
      this.shown = null;
    }
    this.render();
    return true;
  }

  private copy(): void {
    const input = $("share-link") as HTMLInputElement;
    input.select();
    const legacy = (): void => void document.execCommand("copy");
    if (navigator.clipboard) {
      navigator.clipboard.writeText(input.value).catch(legacy);
    } else {
      legacy();
    }
  }

  private render(): void {
    const count = this.viewers.length;
    const button = $("share-button");
    button.textContent = count ? `share · ${count} watching` : "share";
    button.dataset.viewers = String(count);
    const list = $("share-viewers");
    list.replaceChildren();
    const modes = new Map<string, Mode>();
    for (const made of this.links.values()) {
      modes.set(made.link, made.mode);
    }
    for (const viewer of this.viewers) {
      modes.set(viewer.link, viewer.mode);
    }
    for (const [link, mode] of modes) {
      const attached = this.viewers.filter((v) => v.link === link).length;
      const item = document.createElement("li");
      item.dataset.link = link;
      const text = document.createElement("span");
      text.textContent = `${describe(mode)} link · ${attached ? `${attached} attached` : "nobody attached"}`;
      const revoke = document.createElement("button");
      revoke.type = "button";
      revoke.className = "tool";
      revoke.textContent = "revoke";
      revoke.addEventListener("click", () => this.revoke(link));
      item.append(text, revoke);
      list.append(item);
    }
    $("share-empty").hidden = modes.size > 0;
  }
}

/** A viewer's page: the badge in the bar says what the link allows. */
export function showViewerBadge(role: Role): void {
  const badge = $("viewer-badge");
  badge.hidden = role === "owner";
  badge.dataset.role = role;
  badge.textContent = role === "view" ? "viewing — read only" : "shared — you can type";
  badge.title =
    role === "view"
      ? "You are watching someone's terminal: your keys are not sent to it"
      : "You are in someone's terminal: what you type reaches their shell";
}
