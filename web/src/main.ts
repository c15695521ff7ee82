// The webterm page: ask for a terminal, connect, and keep the connection alive.
// Wire protocol: ARCHITECTURE.md ("Browser ↔ terminal") and src/webterm/protocol.py.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { WebglAddon } from "@xterm/addon-webgl";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { Unicode11Addon } from "@xterm/addon-unicode11";

type State = "starting" | "live" | "reconnecting" | "idle-warning" | "ended" | "busy" | "error";

interface Allocation {
  terminal: string;
  url: string;
  token: string;
  reconnect: boolean;
  client: string | null;
}

const CLIENT_KEY = "webterm.client"; // per tab: sessionStorage survives reloads, not new tabs
const ACK_EVERY = 64 * 1024; // bytes rendered between two acks
const ACK_DELAY_MS = 50; // ...or this long after the last render, whichever comes first
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 10_000;
const CLOSE_NORMAL = 1000;
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_FORBIDDEN_ORIGIN = 4403;
const CLOSE_SUPERSEDED = 4409;

const $ = (id: string): HTMLElement => document.getElementById(id) as HTMLElement;

const term = new Terminal({
  allowProposedApi: true,
  cursorBlink: true,
  fontFamily: getComputedStyle(document.documentElement).getPropertyValue("--mono") || "monospace",
  fontSize: 14,
  scrollback: 10_000,
  theme: {
    background: "#0f1419", foreground: "#d7dde5", cursor: "#5ccfe6", cursorAccent: "#0f1419",
    selectionBackground: "#2d4a5f",
    black: "#1c2530", red: "#f07178", green: "#bae67e", yellow: "#ffd580",
    blue: "#73d0ff", magenta: "#d4bfff", cyan: "#95e6cb", white: "#c7cdd5",
    brightBlack: "#5c6773", brightRed: "#ff8f95", brightGreen: "#d1f5a0", brightYellow: "#ffe6a6",
    brightBlue: "#a3e0ff", brightMagenta: "#e6d9ff", brightCyan: "#b8f2df", brightWhite: "#ffffff",
  },
});
const fit = new FitAddon();
term.loadAddon(fit);
term.loadAddon(new WebLinksAddon());
const unicode = new Unicode11Addon();
term.loadAddon(unicode);
term.unicode.activeVersion = "11";
term.open($("terminal"));
try {
  const webgl = new WebglAddon();
  webgl.onContextLoss(() => webgl.dispose()); // the DOM renderer takes over
  term.loadAddon(webgl);
} catch {
  // no WebGL here: the DOM renderer is fine
}
fit.fit();

const encoder = new TextEncoder();
let socket: WebSocket | null = null;
let state: State = "starting";
let backoff = BACKOFF_START_MS;
let retryTimer: number | undefined;
let countdownTimer: number | undefined;
let rendered = 0; // bytes rendered since the last ack
let ackTimer: number | undefined;
let tokenRetried = false;

const webterm = {
  terminal: term,
  get state(): State {
    return state;
  },
  get socket(): WebSocket | null {
    return socket;
  },
  connect: () => start(),
};
(window as unknown as { webterm: typeof webterm }).webterm = webterm;

function setState(next: State, text: string): void {
  state = next;
  const status = $("status");
  status.dataset.state = next;
  status.textContent = text;
}

function showOverlay(title: string, text: string, button: string | null, action?: () => void): void {
  $("overlay-title").textContent = title;
  $("overlay-text").textContent = text;
  const btn = $("overlay-button") as HTMLButtonElement;
  btn.hidden = button === null;
  if (button !== null) {
    btn.textContent = button;
    btn.onclick = () => {
      hideOverlay();
      action?.();
    };
  }
  $("overlay").hidden = false;
}

function hideOverlay(): void {
  $("overlay").hidden = true;
}

function showBanner(text: string, button: string, action: () => void): void {
  $("banner-text").textContent = text;
  const btn = $("banner-button") as HTMLButtonElement;
  btn.textContent = button;
  btn.onclick = action;
  $("banner").hidden = false;
}

function hideBanner(): void {
  $("banner").hidden = true;
}

function clearTimers(): void {
  window.clearTimeout(retryTimer);
  window.clearInterval(countdownTimer);
}

function countdown(seconds: number, render: (left: number) => void, done: () => void): void {
  clearTimers();
  let left = Math.max(1, Math.round(seconds));
  render(left);
  countdownTimer = window.setInterval(() => {
    left -= 1;
    if (left <= 0) {
      window.clearInterval(countdownTimer);
      done();
    } else {
      render(left);
    }
  }, 1000);
}

async function requestTerminal(): Promise<Allocation | { error: string; retryAfter: number }> {
  const client = sessionStorage.getItem(CLIENT_KEY);
  const response = await fetch("/api/terminal", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(client ? { client } : {}),
    credentials: "same-origin",
  });
  const body = await response.json().catch(() => ({}));
  if (response.ok) {
    return body as Allocation;
  }
  const header = Number(response.headers.get("Retry-After"));
  const retryAfter = Number(body.retry_after) || header || 5;
  return { error: String(body.error || `HTTP ${response.status}`), retryAfter };
}

async function start(): Promise<void> {
  clearTimers();
  hideOverlay();
  if (state !== "reconnecting") {
    setState("starting", "starting your terminal…");
  }
  let answer: Awaited<ReturnType<typeof requestTerminal>>;
  try {
    answer = await requestTerminal();
  } catch {
    scheduleReconnect("cannot reach the server");
    return;
  }
  if ("error" in answer) {
    setState("busy", "no terminal available");
    countdown(
      answer.retryAfter,
      (left) =>
        showOverlay(
          "All terminals are busy",
          `${answer.error}. Retrying in ${left} s…`,
          "retry now",
          () => void start(),
        ),
      () => void start(),
    );
    return;
  }
  if (answer.client) {
    sessionStorage.setItem(CLIENT_KEY, answer.client);
  }
  connect(answer);
}

function connect(allocation: Allocation): void {
  const ws = new WebSocket(allocation.url, ["webterm.v1", `webterm.token.${allocation.token}`]);
  ws.binaryType = "arraybuffer";
  socket = ws;
  rendered = 0;
  ws.onopen = () => sendResize();
  ws.onmessage = (event: MessageEvent) => {
    if (event.data instanceof ArrayBuffer) {
      const bytes = new Uint8Array(event.data);
      term.write(bytes, () => acknowledge(bytes.length));
    } else {
      control(JSON.parse(event.data as string));
    }
  };
  ws.onclose = (event: CloseEvent) => {
    if (socket !== ws) {
      return; // an older socket we replaced
    }
    socket = null;
    closed(event.code, event.reason);
  };
}

function acknowledge(bytes: number): void {
  rendered += bytes;
  if (rendered >= ACK_EVERY) {
    flushAck();
  } else if (ackTimer === undefined) {
    ackTimer = window.setTimeout(flushAck, ACK_DELAY_MS);
  }
}

function flushAck(): void {
  window.clearTimeout(ackTimer);
  ackTimer = undefined;
  if (rendered > 0 && socket?.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: "ack", bytes: rendered }));
    rendered = 0;
  }
}

function control(message: { type: string; [key: string]: unknown }): void {
  switch (message.type) {
    case "hello":
      if (message.reattached) {
        term.reset(); // the scrollback replay follows: show it once, not twice
      }
      backoff = BACKOFF_START_MS;
      tokenRetried = false;
      hideOverlay();
      hideBanner();
      setState("live", `connected to ${String(message.terminal)}`);
      sendResize();
      term.focus();
      // announce flow control right away: the server then paces output by our acks
      socket?.send(JSON.stringify({ type: "ack", bytes: 0 }));
      break;
    case "idle": {
      const left = Number(message.seconds_left);
      setState("idle-warning", `idle: ends in ${left} s`);
      showBanner(`Your terminal ends in ${left} s unless you type.`, "stay", stayActive);
      break;
    }
    case "exit":
      ended(`The shell exited with status ${String(message.status)}.`);
      break;
    case "error":
      console.warn("webterm:", message.message);
      break;
  }
}

function stayActive(): void {
  // Only input counts as activity. NUL is harmless to a shell's line editor.
  sendInput("\u0000");
  hideBanner();
  setState("live", "connected");
  term.focus();
}

function closed(code: number, reason: string): void {
  hideBanner();
  if (state === "ended") {
    return;
  }
  if (code === CLOSE_NORMAL) {
    ended("The session ended.");
  } else if (code === CLOSE_SUPERSEDED) {
    setState("error", "opened elsewhere");
    showOverlay(
      "Opened elsewhere",
      "This terminal was opened in another tab or window.",
      "take it back",
      () => void start(),
    );
  } else if (code === CLOSE_UNAUTHORIZED && !tokenRetried) {
    tokenRetried = true;
    void start(); // a fresh token, once
  } else if (code === CLOSE_UNAUTHORIZED || code === CLOSE_FORBIDDEN_ORIGIN) {
    setState("error", "refused");
    showOverlay("Connection refused", reason || "The terminal refused this page.", "try again", () => {
      tokenRetried = false;
      void start();
    });
  } else {
    scheduleReconnect(reason || "connection lost");
  }
}

function ended(text: string): void {
  clearTimers();
  setState("ended", "session ended");
  showOverlay("Session ended", text, "new terminal", () => void start());
}

function scheduleReconnect(why: string): void {
  setState("reconnecting", `${why}: reconnecting…`);
  const delay = backoff * (0.75 + Math.random() * 0.5);
  backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
  clearTimers();
  retryTimer = window.setTimeout(() => void start(), delay);
}

function sendInput(data: string | Uint8Array): void {
  if (socket?.readyState === WebSocket.OPEN) {
    socket.send(typeof data === "string" ? encoder.encode(data) : data);
  }
}

function sendResize(): void {
  if (socket?.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
  }
}

term.onData((data) => {
  if (state === "idle-warning") {
    hideBanner();
    setState("live", "connected");
  }
  sendInput(data);
});
term.onBinary((data) => sendInput(Uint8Array.from(data, (c) => c.charCodeAt(0))));
term.onResize(() => sendResize());
term.onTitleChange((title) => {
  document.title = title ? `${title} — webterm` : "webterm";
  $("title").textContent = title;
});

let fitTimer: number | undefined;
new ResizeObserver(() => {
  window.clearTimeout(fitTimer);
  fitTimer = window.setTimeout(() => fit.fit(), 50);
}).observe($("terminal"));

void start();
