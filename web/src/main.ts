// The webterm page: ask for a terminal, connect to it, and keep the connection alive.
//
// The decisions are machine.ts's state table; this file feeds it events (answers,
// socket frames and closes, timers, clicks, keys) and carries out the effects it returns,
// with the parts that touch the world: protocol.ts (the wire), connection.ts (the socket,
// watchdog and keepalive), output.ts (writes and acks), ui.ts (status, overlay, banner),
// tabs.ts (the tab's id, the leave prompt) and terminal.ts (xterm.js). Beside the
// connection: keybar.ts and viewport.ts (phones), search.ts, fontsize.ts, bell.ts;
// share.ts (share links, and a viewer's page, opened with #share=TOKEN). The state is
// public as `window.webterm.state` (for automation, tests and the console), and every
// change fires a `webterm:state` event.
import { Bell } from "./bell";
import { type Timing, Connection, KEEPALIVE_MS, PONG_TIMEOUT_MS } from "./connection";
import { type Effect, type Event, type Model, type Phase, type TimerName, attached, initial, next } from "./machine";
import { type Credentials, Files } from "./files";
import { FontSize } from "./fontsize";
import { KeyBar } from "./keybar";
import type { Shortcut } from "./keys";
import { Output } from "./output";
import {
  type Allocation,
  type Refusal,
  type Role,
  type ServerMessage,
  decodeAnswer,
  encodeAck,
  encodeResize,
  isRefusal,
} from "./protocol";
import { SharePanel, requestShared, sharedToken, showViewerBadge } from "./share";
import { askBeforeLeaving, tabId, Tabs } from "./tabs";
import { type PageTerminal, openTerminal } from "./terminal";
import { followVisualViewport } from "./viewport";
import { SearchBox } from "./search";
import { hideBanner, hideOverlay, renderState, setTitle, showBanner, showOverlay, terminalElement } from "./ui";

const HIDDEN_BACKLOG = 4 * 1024 * 1024; // unparsed output a hidden tab keeps (see output.ts)
const REQUEST_TIMEOUT_MS = 20_000; // POST /api/terminal (one request is under way at a time)

const shared = sharedToken(); // a viewer's page: the share link's token

/** POST /api/terminal as this tab (a viewer's page: where its link's terminal is);
 * throws when the server cannot be reached. */
async function requestTerminal(): Promise<Allocation | Refusal> {
  if (shared !== null) {
    return requestShared(shared);
  }
  const client = tabId.get();
  const response = await fetch("/api/terminal", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(client ? { client } : {}),
    credentials: "same-origin",
    cache: "no-store",
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS), // a hung request would block every retry
  });
  const body: unknown = await response.json().catch(() => ({}));
  const answer = decodeAnswer(response.status, body, response.headers.get("Retry-After"));
  if (!isRefusal(answer) && answer.client) {
    tabId.set(answer.client);
  }
  return answer;
}

/** The page: the table's current state, and the handles its effects act on. */
class Page {
  model: Model = initial;
  private connection: Connection | null = null;
  private request: Promise<void> | null = null; // the one POST /api/terminal under way
  private readonly timers = new Map<TimerName, number>();
  private readonly queue: Event[] = []; // events raised while an effect is carried out
  private dispatching = false;
  private readonly encoder = new TextEncoder();
  private url: string | null = null; // the terminal's WebSocket URL, once connected
  readonly output: Output;
  readonly files = new Files({ credentials: () => this.credentials() });
  role: Role = shared === null ? "owner" : "view"; // what the last hello said
  onMessage: (message: ServerMessage) => void = () => {}; // besides the state table

  constructor(
    private readonly terminal: PageTerminal,
    private readonly timing: Timing,
    hiddenBacklog: number,
  ) {
    this.output = new Output(
      {
        write: (data, done) => this.terminal.term.write(data, done),
        hidden: () => document.hidden,
        current: () => this.connection?.id ?? null,
        send: (text) => this.connection?.send(text) ?? false,
      },
      hiddenBacklog,
    );
  }

  get socket(): WebSocket | null {
    return this.connection?.ws ?? null;
  }

  /** Ask for the terminal again and (re)connect; resolves when the request is answered.
   * A call while a request is under way joins it. */
  connect(): Promise<void> {
    this.dispatch({ type: "start" });
    return this.request ?? Promise.resolve();
  }

  dispatch(event: Event): void {
    this.queue.push(event);
    if (this.dispatching) {
      return;
    }
    this.dispatching = true;
    try {
      for (let queued = this.queue.shift(); queued !== undefined; queued = this.queue.shift()) {
        const before = this.model;
        const { state, effects } = next(before, queued, { now: Date.now(), random: Math.random() });
        this.model = state;
        for (const effect of effects) {
          this.perform(effect);
        }
        if (state.phase !== before.phase || state.status !== before.status) {
          renderState(state.phase, state.status, state.phase !== before.phase);
        }
      }
    } finally {
      this.dispatching = false;
    }
  }

  /** What the user typed or pasted. */
  input(bytes: Uint8Array<ArrayBuffer>): void {
    this.dispatch({ type: "input" });
    this.connection?.sendInput(bytes);
  }

  inputText(text: string): void {
    this.input(this.encoder.encode(text));
  }

  /** A control frame on the current socket; false when none is open. */
  send(text: string): boolean {
    return this.connection?.send(text) ?? false;
  }

  sendResize(): void {
    if (this.role !== "owner") {
      return; // the size is the owner's (the server ignores a viewer's)
    }
    this.connection?.send(encodeResize(this.terminal.term.cols, this.terminal.term.rows));
  }

  private perform(effect: Effect): void {
    switch (effect.type) {
      case "request": {
        const request = this.ask().finally(() => {
          if (this.request === request) {
            this.request = null;
          }
        });
        this.request = request;
        break;
      }
      case "connect":
        this.connection?.close();
        this.connection = this.open(effect.socket, effect.url, effect.token);
        this.url = effect.url;
        this.output.reset(); // the old socket's output is moot
        break;
      case "disconnect":
        this.connection?.close();
        this.connection = null;
        break;
      case "timer":
        window.clearTimeout(this.timers.get(effect.name));
        this.timers.set(
          effect.name,
          window.setTimeout(() => {
            this.timers.delete(effect.name);
            this.dispatch(effect.event);
          }, effect.after),
        );
        break;
      case "cancel":
        window.clearTimeout(this.timers.get(effect.name));
        this.timers.delete(effect.name);
        break;
      case "overlay":
        showOverlay(effect.title, effect.text, effect.button, () => this.dispatch(effect.click));
        break;
      case "hide-overlay":
        hideOverlay();
        break;
      case "banner":
        showBanner(effect.text, effect.button, () => this.dispatch(effect.click));
        break;
      case "hide-banner":
        hideBanner();
        break;
      case "clear-screen":
        // In-band (RIS), so that output still queued in xterm.js goes first.
        this.output.show("\x1bc", null);
        if (effect.newShell) {
          setTitle(""); // a new shell: the old one's title means nothing
        }
        break;
      case "greet":
        this.connection?.send(encodeAck(0)); // announce flow control right away
        this.sendResize();
        this.connection?.startKeepalive();
        break;
      case "signal-activity":
        // The server counts only input as activity; an empty binary frame is input that
        // writes nothing to the shell (unlike any key, even NUL, which vim, readline or a
        // running program would see).
        this.connection?.send(new Uint8Array(0));
        break;
      case "discard-output":
        this.output.discard();
        break;
      case "focus":
        this.terminal.term.focus();
        break;
      case "warn":
        console.warn("webterm:", effect.text);
        break;
    }
  }

  private async ask(): Promise<void> {
    let answer: Allocation | Refusal;
    try {
      answer = await requestTerminal();
    } catch {
      this.dispatch({ type: "unreachable" });
      return;
    }
    this.dispatch(isRefusal(answer) ? { type: "refused", refusal: answer } : { type: "allocated", allocation: answer });
  }

  /** A fresh token for the terminal on screen (files.ts): asked for as a reconnect
   * would, and refused if the answer names another terminal. */
  private async credentials(): Promise<Credentials | string> {
    if (this.url === null || !attached(this.model.phase)) {
      return "the terminal is not connected";
    }
    let answer: Allocation | Refusal;
    try {
      answer = await requestTerminal();
    } catch {
      return "the server cannot be reached";
    }
    if (isRefusal(answer)) {
      return answer.error;
    }
    return answer.url === this.url ? { terminal: answer.terminal, token: answer.token } : "the terminal changed";
  }

  private open(socket: number, url: string, token: string): Connection {
    return new Connection(socket, url, token, this.timing, {
      output: (bytes) => {
        this.dispatch({ type: "output", socket });
        this.output.show(bytes, socket);
      },
      message: (message) => {
        if (message.type === "hello") {
          this.role = message.role;
        }
        if (message.type === "download") {
          void this.files.download(message.id, message.name, message.size);
        } else {
          this.onMessage(message);
          this.dispatch({ type: "message", socket, message });
        }
      },
      closed: (code, reason) => this.dispatch({ type: "closed", socket, code, reason }),
    });
  }
}

// --- wiring -------------------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
// ?ping=SECONDS: ping that often and give a silent connection min(10 s, SECONDS) to answer
// (tests use it to see a dead connection noticed in seconds rather than half a minute)
const pingParam = Number(params.get("ping"));
const keepaliveMs = pingParam > 0 ? pingParam * 1000 : KEEPALIVE_MS;
// ?backlog=BYTES: what a hidden tab keeps unparsed before it drops it (tests use a small one)
const backlogParam = Number(params.get("backlog"));

const shortcuts: Record<Shortcut, () => void> = {
  search: () => searchBox.toggle(),
  "font-larger": () => fontSize.larger(),
  "font-smaller": () => fontSize.smaller(),
  "font-reset": () => fontSize.reset(),
};
// ?renderer=webgl or ?renderer=dom overrides the choice
const terminal = openTerminal(terminalElement(), params.get("renderer"), (key) => shortcuts[key]());
const { term } = terminal;
const fontSize = new FontSize((size) => {
  term.options.fontSize = size;
  terminal.fit();
});
fontSize.pinch(terminalElement());
const searchBox = new SearchBox(term, terminal.search);
const keyBar = new KeyBar(term);
const bell = new Bell();
followVisualViewport();
// the bar's controls: ⌕ gives the keys to the search box, A− and A+ back to the terminal
const onClick = (id: string, action: () => void): void =>
  document.getElementById(id)?.addEventListener("click", action);
onClick("search-button", () => searchBox.toggle());
onClick("font-smaller", () => {
  fontSize.smaller();
  term.focus();
});
onClick("font-larger", () => {
  fontSize.larger();
  term.focus();
});
const page = new Page(
  terminal,
  { keepaliveMs, pongTimeoutMs: Math.min(PONG_TIMEOUT_MS, keepaliveMs) },
  backlogParam > 0 ? backlogParam : HIDDEN_BACKLOG,
);

page.files.wire();
// sharing: the owner's panel; a viewer's badge and the owner's size
const sharePanel = shared === null ? new SharePanel(() => tabId.get(), (text) => page.send(text)) : null;
page.onMessage = (message) => {
  if (message.type === "hello") {
    document.body.dataset.role = message.role;
    showViewerBadge(message.role);
  } else if (message.type === "size") {
    terminal.fixSize(message.cols, message.rows);
  } else if (message.type === "viewers") {
    sharePanel?.update(message.viewers);
  }
};

term.onData((data) => page.inputText(keyBar.apply(data)));
term.onBinary((data) => page.input(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
term.onResize(() => page.sendResize());
term.onTitleChange(setTitle);
term.onBell(() => bell.ring());

document.addEventListener("visibilitychange", () => {
  if (page.output.takeBehind()) {
    page.dispatch({ type: "catch-up" }); // reattach: the server replays the scrollback
  }
});
askBeforeLeaving(() => shared === null && attached(page.model.phase));

// --- for automation, tests and the console --------------------------------------------------

const api = {
  terminal: term,
  get state(): Phase {
    return page.model.phase;
  },
  get socket(): WebSocket | null {
    return page.socket;
  },
  get renderer(): "webgl" | "dom" {
    return terminal.renderer();
  },
  get client(): string | null {
    return tabId.get();
  },
  /** The terminal's font size (px), as kept in localStorage. */
  get fontSize(): number {
    return fontSize.get();
  },
  /** Uploads and downloads so far: kind, name, state, bytes, the name a file got. */
  get transfers(): readonly unknown[] {
    return page.files.transfers;
  },
  /** The image addon (sixel, iTerm2 images): `images.storageUsage` is in MB. */
  images: terminal.images,
  /** Ask for the terminal again and (re)connect, whatever the state. */
  connect: (): Promise<void> => page.connect(),
  /** What the idle banner's "stay" button does. */
  stay: (): void => page.dispatch({ type: "stay" }),
  /** "owner", or a viewer's link mode ("view", "type"), as the last hello said. */
  get role(): Role {
    return page.role;
  },
  /** The share panel (the owner's page only): make(mode) a link, revoke(link). */
  share: sharePanel,
};
(window as unknown as { webterm: typeof api }).webterm = api;

renderState(page.model.phase, page.model.status, false);
if (shared === null) {
  void new Tabs().claimId().then(() => page.connect());
} else {
  void page.connect(); // a viewer has no tab id of its own to claim
}
