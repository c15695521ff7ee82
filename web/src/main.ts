// The webterm page: ask for a terminal, connect to it, and keep the connection alive.
//
// Wire protocol: ARCHITECTURE.md ("Browser ↔ terminal", "Browser ↔ webserver") and
// src/webterm/protocol.py. Binary frames are terminal bytes both ways; text frames are
// JSON control messages. The page is one small state machine whose state is public as
// `window.webterm.state` (for automation, tests and the console):
//
//   starting ──hello──▶ live ◀──hello── reconnecting ◀── socket dropped or silent (not
//      │                 │ ▲                   │          1000/4401/4409), 5xx while reconnecting
//      │ 503/429         │ idle ──▶ idle-warning ──input, "stay", notices stop──▶ live
//      ▼                 │
//    busy (countdown,    ├── exit / 1000 / idle timeout ──▶ ended ("new terminal")
//    then retry)         └── 4409, 4401 twice, 4403, 1011 three times, HTTP error ──▶ error
//
// At most one request for a terminal is under way at a time (start() joins it), so there
// is never more than one WebSocket and never more than one pending retry.
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
  client?: string | null;
}

interface Refusal {
  status: number;
  error: string;
  retryAfter: number | null; // seconds; null: retrying will not help
}

interface ControlMessage {
  type: string;
  [key: string]: unknown;
}

const CLIENT_KEY = "webterm.client"; // per tab: sessionStorage survives reloads, not new tabs
const ACK_EVERY = 64 * 1024; // bytes rendered before an ack goes out at once...
const WRITE_SLICE = 16 * 1024; // bytes handed to xterm.js per write
const HIDDEN_BACKLOG = 4 * 1024 * 1024; // unparsed output a hidden tab keeps (see show())
const ACK_DELAY_MS = 100; // ...else this long after the first unacknowledged render
const INPUT_CHUNK = 64 * 1024; // bytes per input frame; the server refuses frames over 1 MiB
const BACKOFF_START_MS = 500; // first reconnect delay, doubled per failure...
const BACKOFF_MAX_MS = 10_000; // ...up to this; each delay is jittered ±25 %
const STABLE_MS = 10_000; // live this long: the next drop starts from the first delay again
const KEEPALIVE_MS = 25_000; // a ping keeps idle-timeout proxies (nginx: 60 s) from cutting us
const PONG_TIMEOUT_MS = 10_000; // nothing at all heard this long after a ping: the path is dead
const LATE_MS = 1_000; // a check this late means the page slept or was busy: ask once more
const HELLO_TIMEOUT_MS = 20_000; // a socket that has not said hello by then is given up
const REQUEST_TIMEOUT_MS = 20_000; // POST /api/terminal (one request is under way at a time)
const INTERNAL_ERROR_LIMIT = 3; // 1011 closes in a row (no output between) before we stop
const IDLE_NOTICE_GAP_MS = 2_500; // a warning's notices come every second: silence ends it
const FRESH_RETRY_MS = 250; // "new terminal" answered with the ended one: ask again after...
const FRESH_RETRIES = 20; // ...this many times at most (the recycle is milliseconds behind)
const DUPLICATE_PROBE_MS = 100; // how long a duplicated tab waits for its original to answer
const TABS_CHANNEL = "webterm.tabs"; // BroadcastChannel between this origin's tabs
const FIT_DELAY_MS = 50; // debounce of window resizes (a drag fires dozens)
const DEFAULT_RETRY_S = 5; // when a busy answer names no delay

const CLOSE_NORMAL = 1000; // the shell exited: the session is over
const CLOSE_UNAUTHORIZED = 4401; // bad or expired token: ask for a fresh one, once
const CLOSE_FORBIDDEN_ORIGIN = 4403;
const CLOSE_SUPERSEDED = 4409; // another tab or window took this terminal over
const CLOSE_INTERNAL_ERROR = 1011; // the terminal failed, e.g. its shell could not start

const THEME = {
  background: "#0f1419",
  foreground: "#d7dde5",
  cursor: "#5ccfe6",
  cursorAccent: "#0f1419",
  selectionBackground: "#2d4a5f",
  black: "#1c2530",
  red: "#f07178",
  green: "#bae67e",
  yellow: "#ffd580",
  blue: "#73d0ff",
  magenta: "#d4bfff",
  cyan: "#95e6cb",
  white: "#c7cdd5",
  brightBlack: "#5c6773",
  brightRed: "#ff8f95",
  brightGreen: "#d1f5a0",
  brightYellow: "#ffe6a6",
  brightBlue: "#a3e0ff",
  brightMagenta: "#e6d9ff",
  brightCyan: "#b8f2df",
  brightWhite: "#ffffff",
};

const $ = (id: string): HTMLElement => document.getElementById(id) as HTMLElement;
const encoder = new TextEncoder();

// --- the terminal ------------------------------------------------------------------------

const term = new Terminal({
  allowProposedApi: true, // the unicode11 addon uses term.unicode
  cursorBlink: true,
  fontFamily: getComputedStyle(document.documentElement).getPropertyValue("--mono").trim() || "monospace",
  fontSize: 14,
  scrollback: 10_000,
  theme: THEME,
});
const fit = new FitAddon();
term.loadAddon(fit);
term.loadAddon(new WebLinksAddon());
term.loadAddon(new Unicode11Addon());
term.unicode.activeVersion = "11";
term.open($("terminal"));

/** WebGL drawn by the CPU (SwiftShader, llvmpipe: no GPU, as in many VMs and remote
 * desktops) is slower than the DOM renderer, and it is what makes a busy page slow to
 * echo keys. */
function hardwareWebgl(): boolean {
  const gl = document.createElement("canvas").getContext("webgl2");
  if (gl === null) {
    return false;
  }
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const name = String(info === null ? "" : gl.getParameter(info.UNMASKED_RENDERER_WEBGL));
  gl.getExtension("WEBGL_lose_context")?.loseContext();
  return !/swiftshader|llvmpipe|software/i.test(name);
}

const params = new URLSearchParams(location.search);
// ?ping=SECONDS: ping that often and give a silent connection min(10 s, SECONDS) to answer
// (tests use it to see a dead connection noticed in seconds rather than half a minute)
const pingParam = Number(params.get("ping"));
const keepaliveMs = pingParam > 0 ? pingParam * 1000 : KEEPALIVE_MS;
const pongTimeoutMs = Math.min(PONG_TIMEOUT_MS, keepaliveMs);
// ?backlog=BYTES: what a hidden tab keeps unparsed before it drops it (tests use a small one)
const backlogParam = Number(params.get("backlog"));
const hiddenBacklog = backlogParam > 0 ? backlogParam : HIDDEN_BACKLOG;

// ?renderer=webgl or ?renderer=dom overrides the choice
const wanted = params.get("renderer");
let renderer: "webgl" | "dom" = "dom";
try {
  if (wanted === "dom" || (wanted !== "webgl" && !hardwareWebgl())) {
    throw new Error("software WebGL");
  }
  const webgl = new WebglAddon();
  webgl.onContextLoss(() => {
    webgl.dispose(); // the DOM renderer takes over
    renderer = "dom";
  });
  term.loadAddon(webgl);
  renderer = "webgl";
} catch {
  // no WebGL2, or only in software: the DOM renderer is the faster one then
}
fit.fit();

// --- page state ------------------------------------------------------------------------------

let state: State = "starting";
let socket: WebSocket | null = null;
let backoff = BACKOFF_START_MS;
let liveSince = 0;
let tokenRetried = false;
let lastTerminal: string | null = null; // the terminal we were live on, until it ends
let timer: number | undefined; // the one pending retry/reconnect/countdown
let idleDeadline = 0;
let idleTimer: number | undefined;
let keepalive: number | undefined;
let watchdog: number | undefined; // gives up on a socket that has gone silent
let secondChance = false; // the watchdog fired late once and pinged again
let idleNoticeTimer: number | undefined; // ends a warning whose notices stopped
let inFlight: Promise<void> | null = null; // the one start() under way
let serverError: string | null = null; // the current socket's last `error` message
let internalErrors = 0; // 1011 closes since the last output
let endedTerminal: string | null = null; // the terminal whose session ended, till a new one
let endedSocket: WebSocket | null = null; // the socket that delivered the end, till it closes
let freshRetries = 0;
let unacked = 0; // bytes rendered but not yet acknowledged
let ackTimer: number | undefined;

function setState(next: State, text: string): void {
  const changed = next !== state;
  state = next;
  const status = $("status");
  status.dataset.state = next;
  status.textContent = text;
  document.body.dataset.state = next;
  if (changed) {
    window.dispatchEvent(new CustomEvent("webterm:state", { detail: { state: next } }));
  }
}

function showOverlay(title: string, text: string, button: string | null, action?: () => void): void {
  $("overlay-title").textContent = title;
  $("overlay-text").textContent = text;
  const btn = $("overlay-button") as HTMLButtonElement;
  btn.hidden = button === null;
  btn.textContent = button ?? "";
  btn.onclick = () => {
    hideOverlay();
    action?.();
  };
  $("overlay").hidden = false;
  if (button !== null) {
    btn.focus();
  }
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
  window.clearInterval(idleTimer);
  window.clearTimeout(idleNoticeTimer);
}

function clearTimer(): void {
  window.clearTimeout(timer);
  window.clearInterval(timer);
  timer = undefined;
}

// --- asking for a terminal ---------------------------------------------------------------------

async function requestTerminal(): Promise<Allocation | Refusal> {
  const client = sessionStorage.getItem(CLIENT_KEY);
  const response = await fetch("/api/terminal", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(client ? { client } : {}),
    credentials: "same-origin",
    cache: "no-store",
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS), // a hung request would block every retry
  });
  const body = await response.json().catch(() => ({}));
  if (response.ok) {
    return body as Allocation;
  }
  const busy = response.status === 503 || response.status === 429;
  const seconds = Number(body.retry_after) || Number(response.headers.get("Retry-After"));
  return {
    status: response.status,
    error: String(body.error || `HTTP ${response.status}`),
    retryAfter: busy ? Math.max(1, Math.ceil(seconds || DEFAULT_RETRY_S)) : null,
  };
}

/** Ask for the terminal and connect to it; a call while one is under way joins it (a
 * double click, or a click while the scheduled retry runs, must not start a second
 * request, a second countdown or a second socket). */
function start(): Promise<void> {
  inFlight ??= attempt().finally(() => {
    inFlight = null;
  });
  return inFlight;
}

async function attempt(): Promise<void> {
  clearTimer();
  hideOverlay();
  if (state !== "reconnecting") {
    setState("starting", "starting your terminal…");
  }
  let answer: Allocation | Refusal;
  try {
    answer = await requestTerminal();
  } catch {
    scheduleReconnect("cannot reach the server");
    return;
  }
  if ("status" in answer) {
    if (state === "reconnecting" && answer.retryAfter === null && answer.status >= 500) {
      // a proxy in front of a restarting webserver (502, 504): more of the same outage
      scheduleReconnect(`HTTP ${answer.status}`, `The server answered HTTP ${answer.status}`);
    } else {
      refused(answer);
    }
    return;
  }
  if (answer.client) {
    sessionStorage.setItem(CLIENT_KEY, answer.client);
  }
  if (lastTerminal !== null && !answer.reconnect) {
    // We were on a terminal and the manager no longer has it for us: it was deleted,
    // crashed or recycled. Say so rather than slip the user into a stranger's fresh shell.
    terminalGone(lastTerminal);
    return;
  }
  if (answer.reconnect && answer.terminal === endedTerminal && freshRetries < FRESH_RETRIES) {
    // "new terminal" right after the end: the terminal's report of it has not reached the
    // manager yet, which still has the ended one for us. Ask again in a moment rather
    // than attach to a shell that is gone (and show "session ended" once more).
    freshRetries += 1;
    timer = window.setTimeout(() => void start(), FRESH_RETRY_MS);
    return;
  }
  endedTerminal = null;
  freshRetries = 0;
  connect(answer);
}

function terminalGone(name: string): void {
  lastTerminal = null;
  clearTimer();
  hideBanner();
  setState("ended", "terminal gone");
  showOverlay(
    "Your terminal is gone",
    `${name} was stopped (deleted, restarted or recycled) and its shell and files went with it.`,
    "new terminal",
    () => void start(),
  );
}

function refused(refusal: Refusal): void {
  clearTimer(); // the one countdown: an earlier one must not keep calling start()
  hideBanner();
  if (refusal.retryAfter === null) {
    setState("error", refusal.error);
    showOverlay("Cannot start a terminal", `${refusal.error} (HTTP ${refusal.status}).`, "try again", () => void start());
    return;
  }
  let left = refusal.retryAfter;
  const title = refusal.status === 429 ? "Too many requests" : "All terminals are busy";
  const render = (): void => {
    setState("busy", `no terminal available, retrying in ${left} s`);
    showOverlay(title, `Retrying in ${left} s…`, "retry now", () => void start());
  };
  render();
  timer = window.setInterval(() => {
    left -= 1;
    if (left > 0) {
      render();
    } else {
      void start();
    }
  }, 1000);
}

// --- the connection ---------------------------------------------------------------------------

function connect(allocation: Allocation): void {
  const old = socket;
  socket = null; // its close event is no longer ours to handle
  old?.close(CLOSE_NORMAL);
  const ws = new WebSocket(allocation.url, ["webterm.v1", `webterm.token.${allocation.token}`]);
  ws.binaryType = "arraybuffer";
  socket = ws;
  serverError = null;
  window.clearInterval(keepalive);
  unheard();
  expectFrame(ws, HELLO_TIMEOUT_MS);
  unacked = 0;
  window.clearTimeout(ackTimer);
  ackTimer = undefined;
  output = output.filter((pending) => pending.ws === null); // the old socket's is moot
  backlog = 0;
  ws.onmessage = (event: MessageEvent) => {
    if (socket !== ws) {
      return;
    }
    unheard(); // any frame shows the path is alive
    if (event.data instanceof ArrayBuffer) {
      if (state !== "starting" && state !== "reconnecting") {
        internalErrors = 0; // after hello, output: this terminal works
      }
      show(new Uint8Array(event.data), ws);
    } else {
      let message: ControlMessage;
      try {
        message = JSON.parse(event.data as string) as ControlMessage;
      } catch {
        return;
      }
      control(message);
    }
  };
  ws.onclose = (event: CloseEvent) => {
    if (socket !== ws) {
      return; // an older socket we replaced
    }
    socket = null;
    window.clearInterval(keepalive);
    unheard();
    if (ws === endedSocket) {
      // Its session already ended (the `exit` message came first): the close that
      // follows is no news, and by now the user may have asked for a new terminal.
      endedSocket = null;
      return;
    }
    closed(event.code, event.reason);
  };
}

/** Expect a frame on `ws` within `ms`, unless a wait is already running. A path that
 * went dead without a FIN or RST (Wi-Fi roaming, a NAT or VPN forgetting us, a laptop
 * asleep) never closes the socket: only silence after a ping tells. */
function expectFrame(ws: WebSocket, ms: number): void {
  if (watchdog !== undefined) {
    return;
  }
  const due = Date.now() + ms;
  watchdog = window.setTimeout(() => {
    watchdog = undefined;
    if (socket !== ws) {
      return;
    }
    if (Date.now() - due > LATE_MS && !secondChance) {
      // We were asleep or too busy to read: frames may be waiting. Ask once more.
      secondChance = true;
      send(JSON.stringify({ type: "ping" }));
      expectFrame(ws, ms);
      return;
    }
    socket = null; // its close handshake will not come through: do not wait for it
    window.clearInterval(keepalive);
    ws.close(CLOSE_NORMAL);
    closed(1006, "no answer from the server");
  }, ms);
}

function unheard(): void {
  window.clearTimeout(watchdog);
  watchdog = undefined;
  secondChance = false;
}

function control(message: ControlMessage): void {
  switch (message.type) {
    case "hello":
      hello(String(message.terminal), message.reattached === true);
      break;
    case "idle":
      idle(Number(message.seconds_left));
      break;
    case "exit":
      ended(
        state === "idle-warning"
          ? "Your terminal was closed after a while without input."
          : `The shell exited with status ${String(message.status)}.`,
      );
      break;
    case "error":
      serverError = String(message.message);
      console.warn("webterm:", serverError);
      break;
    case "flush":
      discardOutput(); // Ctrl-C: the backlog is history, as the tty's own queue is
      break;
    default: // pong, and whatever a newer server adds
      break;
  }
}

function hello(name: string, reattached: boolean): void {
  const restarted = !reattached && lastTerminal === name && state === "reconnecting";
  lastTerminal = name;
  // Start from a clean screen: a reattach replays the scrollback, which would otherwise
  // land below the same output already on screen; a new terminal owes nothing to the
  // old screen. In-band (RIS), so that output still queued in xterm.js goes first.
  show("\x1bc", null);
  if (!reattached) {
    setTitle(""); // a new shell: the old one's title means nothing
  }
  clearTimer();
  tokenRetried = false;
  liveSince = Date.now();
  hideOverlay();
  hideBanner();
  setState("live", reattached ? `reconnected to ${name}` : `connected to ${name}`);
  if (restarted) {
    // same terminal, new shell: its server restarted and the old shell did not survive
    showBanner(`${name} restarted: this is a new shell.`, "ok", hideBanner);
  }
  send(JSON.stringify({ type: "ack", bytes: 0 })); // announce flow control right away
  sendResize();
  window.clearInterval(keepalive);
  const ws = socket;
  keepalive = window.setInterval(() => {
    if (ws !== null && send(JSON.stringify({ type: "ping" }))) {
      expectFrame(ws, pongTimeoutMs);
    }
  }, keepaliveMs);
  term.focus();
}

// --- output: one write in xterm.js at a time, the rest queued here where it can be dropped

interface Pending {
  data: Uint8Array | string;
  ws: WebSocket | null; // the socket to acknowledge it on; null: our own writes
  acked: boolean; // acknowledged on receipt (a hidden tab), not once parsed
}
let output: Pending[] = [];
let writing = false;
let backlog = 0; // bytes from sockets in `output` that were acknowledged on receipt
let behind = false; // a hidden tab dropped output: it catches up from the scrollback

// A hidden tab's timers are throttled (to one wake-up a second, after five minutes to one
// a minute), and xterm.js parses on timers: acknowledging only parsed output would hold a
// build running in a background tab to a slice a second, or a minute. So a hidden tab
// acknowledges output on receipt and keeps up to `hiddenBacklog` of it unparsed; past that
// it drops it and, when shown again, reattaches: the server replays the scrollback (and
// the terminal modes), as after any reconnect.
function show(data: Uint8Array | string, ws: WebSocket | null): void {
  const early = ws !== null && document.hidden;
  if (early) {
    acknowledge(data.length);
    if (behind || backlog + data.length > hiddenBacklog) {
      behind = true;
      dropBacklog();
      return;
    }
    backlog += data.length;
  }
  if (typeof data === "string") {
    output.push({ data, ws, acked: early });
  } else {
    // in slices, so that a flush leaves xterm.js little to finish
    for (let start = 0; start < data.length; start += WRITE_SLICE) {
      output.push({ data: data.subarray(start, start + WRITE_SLICE), ws, acked: early });
    }
  }
  if (!writing) {
    writeNext();
  }
}

/** Drop the socket output acknowledged on receipt that is still waiting to be parsed. */
function dropBacklog(): void {
  output = output.filter((pending) => !pending.acked);
  backlog = 0;
}

/** Shown again after dropping output while hidden: reattach for the scrollback. */
function catchUp(): void {
  if (document.hidden || !behind) {
    return;
  }
  behind = false;
  const ws = socket;
  if (ws === null || state !== "live") {
    return; // a connection under way replays the scrollback anyway
  }
  socket = null; // its close is ours: not a dropped connection
  window.clearInterval(keepalive);
  unheard();
  ws.close(CLOSE_NORMAL);
  setState("reconnecting", "catching up…");
  void start();
}

function writeNext(): void {
  const next = output.shift();
  writing = next !== undefined;
  if (next === undefined) {
    return;
  }
  term.write(next.data, () => {
    // Acknowledge once xterm.js has parsed them: that is what paces the server.
    if (next.acked) {
      backlog = Math.max(0, backlog - next.data.length);
    } else if (next.ws !== null && next.ws === socket) {
      acknowledge(next.data.length);
    }
    writeNext();
  });
}

function discardOutput(): void {
  let dropped = 0;
  output = output.filter((pending) => {
    if (pending.ws === null || pending.ws !== socket) {
      return true;
    }
    if (pending.acked) {
      backlog = Math.max(0, backlog - pending.data.length);
    } else {
      dropped += pending.data.length;
    }
    return false;
  });
  if (dropped > 0) {
    acknowledge(dropped);
    flushAck();
  }
}

function acknowledge(bytes: number): void {
  unacked += bytes;
  if (unacked >= ACK_EVERY) {
    flushAck();
  } else if (ackTimer === undefined) {
    ackTimer = window.setTimeout(flushAck, ACK_DELAY_MS);
  }
}

function flushAck(): void {
  window.clearTimeout(ackTimer);
  ackTimer = undefined;
  if (unacked > 0 && send(JSON.stringify({ type: "ack", bytes: unacked }))) {
    unacked = 0;
  }
}

function closed(code: number, reason: string): void {
  hideBanner();
  if (state === "ended" || state === "error" || state === "busy") {
    return;
  }
  if (code === CLOSE_NORMAL) {
    ended("The session ended.");
  } else if (code === CLOSE_SUPERSEDED) {
    setState("error", "opened elsewhere");
    showOverlay(
      "This terminal was opened elsewhere",
      "Another tab or window took it over. Take it back here?",
      "take it back",
      () => void start(),
    );
  } else if (code === CLOSE_UNAUTHORIZED && !tokenRetried) {
    tokenRetried = true;
    void start(); // a fresh token, once
  } else if (code === CLOSE_INTERNAL_ERROR) {
    // The terminal failed (its shell could not start, say): worth a retry or two, but
    // not forever, and the user should read why.
    const why = serverError ?? (reason || "the terminal failed");
    internalErrors += 1;
    if (internalErrors < INTERNAL_ERROR_LIMIT) {
      scheduleReconnect(why, capitalize(why));
      return;
    }
    setState("error", why);
    showOverlay("The terminal cannot start", `${capitalize(why)}.`, "try again", () => {
      internalErrors = 0;
      void start();
    });
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
  endedTerminal = lastTerminal ?? endedTerminal;
  endedSocket = socket; // it stays open to acknowledge the tail; its close is expected
  lastTerminal = null; // the next terminal is a new one, and expected to be
  clearTimer();
  hideBanner();
  setState("ended", "session ended");
  // "new terminal" asks again as the same tab: the old terminal was recycled, so the
  // manager hands out a fresh one.
  showOverlay("Session ended", text, "new terminal", () => void start());
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Retry after the next backoff delay; `why` goes to the status line, `headline` to the
 * banner. */
function scheduleReconnect(why: string, headline = "Connection lost"): void {
  if (liveSince && Date.now() - liveSince > STABLE_MS) {
    backoff = BACKOFF_START_MS;
  }
  liveSince = 0;
  const delay = backoff * (0.75 + Math.random() * 0.5);
  backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
  setState("reconnecting", `${why}: reconnecting…`);
  showBanner(`${headline} — reconnecting in ${Math.ceil(delay / 1000)} s…`, "now", () => void start());
  clearTimer();
  timer = window.setTimeout(() => void start(), delay);
}

// --- idle warnings ---------------------------------------------------------------------------

function idle(secondsLeft: number): void {
  idleDeadline = Date.now() + secondsLeft * 1000;
  const render = (): void => {
    const left = Math.max(0, Math.ceil((idleDeadline - Date.now()) / 1000));
    setState("idle-warning", `idle: closing in ${left} s`);
    showBanner(`No input for a while: this terminal closes in ${left} s.`, "stay", stay);
  };
  render();
  window.clearInterval(idleTimer);
  idleTimer = window.setInterval(render, 250);
  // The server repeats the notice every second while the warning lasts. When they stop,
  // it is over: a notice that was on its way when "stay" was clicked must not leave a
  // stale countdown on screen.
  window.clearTimeout(idleNoticeTimer);
  idleNoticeTimer = window.setTimeout(active, IDLE_NOTICE_GAP_MS);
}

function stay(): void {
  signalActivity();
  active();
  term.focus();
}

function active(): void {
  if (state === "idle-warning") {
    hideBanner();
    setState("live", "connected");
  }
}

/** Tells the server the user is here without typing anything. The server counts only
 * input as activity; an empty binary frame is input that writes nothing to the shell
 * (unlike any key, even NUL, which vim, readline or a running program would see). */
function signalActivity(): void {
  send(new Uint8Array(0));
}

// --- sending -------------------------------------------------------------------------------------

function send(data: string | Uint8Array<ArrayBuffer>): boolean {
  if (socket?.readyState !== WebSocket.OPEN) {
    return false;
  }
  socket.send(data);
  return true;
}

function sendInput(bytes: Uint8Array<ArrayBuffer>): void {
  for (let offset = 0; offset < bytes.length; offset += INPUT_CHUNK) {
    send(bytes.subarray(offset, offset + INPUT_CHUNK));
  }
}

function sendResize(): void {
  send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
}

term.onData((data) => {
  active();
  sendInput(encoder.encode(data));
});
term.onBinary((data) => {
  active();
  sendInput(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff));
});
term.onResize(() => sendResize());
function setTitle(title: string): void {
  document.title = title ? `${title} — webterm` : "webterm";
  $("title").textContent = title;
}
term.onTitleChange(setTitle);

// Ctrl+Shift+C copies the selection, Ctrl+Shift+V pastes (the browser's own paste
// event, which xterm.js handles); plain Ctrl+C and Ctrl+V stay the shell's keys.
term.attachCustomKeyEventHandler((event) => {
  if (!event.ctrlKey || !event.shiftKey || event.altKey || event.metaKey) {
    return true;
  }
  const key = event.key.toLowerCase();
  if (key === "c") {
    if (event.type === "keydown" && term.hasSelection()) {
      copy(term.getSelection());
    }
    event.preventDefault();
    return false;
  }
  return key !== "v";
});

function copy(text: string): void {
  // The async clipboard needs a secure context (https or localhost); elsewhere the
  // legacy command copies xterm.js's selection through its own copy handler.
  const legacy = (): void => void document.execCommand("copy");
  if (navigator.clipboard) {
    navigator.clipboard.writeText(text).catch(legacy);
  } else {
    legacy();
  }
}

let fitTimer: number | undefined;
new ResizeObserver(() => {
  window.clearTimeout(fitTimer);
  fitTimer = window.setTimeout(() => fit.fit(), FIT_DELAY_MS);
}).observe($("terminal"));
void document.fonts?.ready.then(() => fit.fit());

// --- for automation, tests and the console --------------------------------------------------

const api = {
  terminal: term,
  get state(): State {
    return state;
  },
  get socket(): WebSocket | null {
    return socket;
  },
  get renderer(): "webgl" | "dom" {
    return renderer;
  },
  get client(): string | null {
    return sessionStorage.getItem(CLIENT_KEY);
  },
  /** Ask for the terminal again and (re)connect, whatever the state. */
  connect: (): Promise<void> => start(),
  /** What the idle banner's "stay" button does. */
  stay,
};
(window as unknown as { webterm: typeof api }).webterm = api;

// Closing the tab (or Ctrl+W, which the browser takes before the shell sees it) asks
// first while a shell is attached. Browsers show their own text, and only after the user
// has interacted with the page.
document.addEventListener("visibilitychange", catchUp);

window.addEventListener("beforeunload", (event) => {
  if (state === "live" || state === "idle-warning") {
    event.preventDefault();
    event.returnValue = ""; // older Chromium needs it set
  }
});

// --- one terminal per tab ---------------------------------------------------------------------
//
// A duplicated tab ("Duplicate tab", window.open) starts with a copy of sessionStorage and
// so with this tab's id: it would take this tab's terminal over. At load, a tab that has
// an id asks the others whether one of them holds it; if one answers, the id is a copy and
// the new tab asks for a terminal of its own. A reload has no such twin: the old page is
// gone before the new one asks.

const tabs = typeof BroadcastChannel === "function" ? new BroadcastChannel(TABS_CHANNEL) : null;
let holdsId = false; // false while this tab is still asking whether its id is a copy
let onOwner: ((client: string) => void) | null = null;

if (tabs !== null) {
  tabs.onmessage = (event: MessageEvent) => {
    const message = event.data as { type?: unknown; client?: unknown } | null;
    const client = typeof message?.client === "string" ? message.client : null;
    if (client === null) {
      return;
    }
    if (message?.type === "who-has" && holdsId && client === sessionStorage.getItem(CLIENT_KEY)) {
      tabs.postMessage({ type: "mine", client });
    } else if (message?.type === "mine") {
      onOwner?.(client);
    }
  };
}

function claimId(): Promise<void> {
  const client = sessionStorage.getItem(CLIENT_KEY);
  if (tabs === null || !client) {
    holdsId = true;
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const done = (copied: boolean): void => {
      window.clearTimeout(wait);
      onOwner = null;
      if (copied) {
        sessionStorage.removeItem(CLIENT_KEY); // the server gives this tab its own
      }
      holdsId = true;
      resolve();
    };
    const wait = window.setTimeout(() => done(false), DUPLICATE_PROBE_MS);
    onOwner = (owner) => {
      if (owner === client) {
        done(true);
      }
    };
    tabs.postMessage({ type: "who-has", client });
  });
}

void claimId().then(start);
