// The page's state table: next(model, event, env) → {state, effects}. Pure: no DOM, no
// socket, no clock, no randomness (the time and a random number come in `env`), so every
// rule below is unit-tested under node (web/test/machine.test.mjs). main.ts feeds it
// events and carries out the effects it returns.
//
//   starting ──hello──▶ live ◀──hello── reconnecting ◀── socket dropped or silent (not
//      │                 │ ▲                   │          1000/4401/4409), 5xx while reconnecting
//      │ 503/429         │ idle ──▶ idle-warning ──input, "stay", notices stop──▶ live
//      ▼                 │
//    busy (countdown,    ├── exit / 1000 / idle timeout ──▶ ended ("new terminal")
//    then retry)         └── 4409, 4410, 4401 twice, 4403, 1011 three times, HTTP error ──▶ error
//
// At most one request for a terminal is under way at a time (`start` joins it), so there
// is never more than one WebSocket and never more than one pending retry. Connections
// are numbered: events carry the number of the socket they came from, and only the
// current one's count.
//
// One file of a little over 400 lines, most of it the rules themselves: the table reads
// best whole, and each part it could be cut into would need the others' types.
import { type Allocation, type Refusal, type ServerMessage, CloseCode } from "./protocol";

export type Phase = "starting" | "live" | "reconnecting" | "idle-warning" | "ended" | "busy" | "error";

export const BACKOFF_START_MS = 500; // first reconnect delay, doubled per failure...
export const BACKOFF_MAX_MS = 10_000; // ...up to this; each delay is jittered ±25 %
export const STABLE_MS = 10_000; // live this long: the next drop starts from the first delay again
export const INTERNAL_ERROR_LIMIT = 3; // 1011 closes in a row (no output between) before we stop
export const IDLE_TICK_MS = 250; // the idle countdown is redrawn this often
export const IDLE_NOTICE_GAP_MS = 2_500; // a warning's notices come every second: silence ends it
export const FRESH_RETRY_MS = 250; // "new terminal" answered with the ended one: ask again after...
export const FRESH_RETRIES = 20; // ...this many times at most (the recycle is milliseconds behind)
export const BUSY_TICK_MS = 1_000; // the busy countdown counts seconds

export interface Model {
  readonly phase: Phase;
  readonly status: string; // the status line
  readonly requesting: boolean; // a POST /api/terminal is under way
  readonly socket: number | null; // the connection whose events count
  readonly sockets: number; // connections opened so far: the next one is sockets + 1
  readonly endedSocket: number | null; // delivered the end and stays open for the tail
  readonly lastTerminal: string | null; // the terminal we were live on, until it ends
  readonly endedTerminal: string | null; // the terminal whose session ended, till a new one
  readonly freshRetries: number;
  readonly tokenRetried: boolean; // a 4401 was answered with a fresh token already
  readonly internalErrors: number; // 1011 closes since the last output
  readonly serverError: string | null; // the current socket's last `error` message
  readonly backoffMs: number;
  readonly liveSince: number; // ms; 0: not live since the last drop
  readonly idleDeadline: number; // ms: when an idle-warned shell ends
  readonly busy: { readonly left: number; readonly title: string } | null; // the countdown
}

export const initial: Model = {
  phase: "starting",
  status: "starting your terminal…",
  requesting: false,
  socket: null,
  sockets: 0,
  endedSocket: null,
  lastTerminal: null,
  endedTerminal: null,
  freshRetries: 0,
  tokenRetried: false,
  internalErrors: 0,
  serverError: null,
  backoffMs: BACKOFF_START_MS,
  liveSince: 0,
  idleDeadline: 0,
  busy: null,
};

export type Event =
  /** Ask for a terminal and connect: a click, a retry timer, window.webterm.connect(). A
   * request under way is joined. `reset` forgets a give-up: 1011 closes, a refused token. */
  | { readonly type: "start"; readonly reset?: "errors" | "token" }
  | { readonly type: "allocated"; readonly allocation: Allocation }
  | { readonly type: "refused"; readonly refusal: Refusal }
  | { readonly type: "unreachable" } // the request failed or timed out
  | { readonly type: "message"; readonly socket: number; readonly message: ServerMessage }
  | { readonly type: "output"; readonly socket: number } // a binary frame arrived
  | { readonly type: "closed"; readonly socket: number; readonly code: number; readonly reason: string }
  | { readonly type: "busy-tick" }
  | { readonly type: "idle-tick" }
  | { readonly type: "idle-quiet" } // the idle notices stopped
  | { readonly type: "input" } // the user typed or pasted
  | { readonly type: "stay" } // the idle banner's button
  | { readonly type: "dismiss" } // the restart banner's button
  | { readonly type: "catch-up" }; // a hidden tab that dropped output is shown again

/** "retry" is the one pending retry, reconnect or busy countdown. */
export type TimerName = "retry" | "idle-tick" | "idle-quiet";

export type Effect =
  | { readonly type: "request" } // POST /api/terminal, answered with allocated/refused/unreachable
  | { readonly type: "connect"; readonly socket: number; readonly url: string; readonly token: string }
  | { readonly type: "disconnect" } // close the current socket and forget it
  | { readonly type: "timer"; readonly name: TimerName; readonly after: number; readonly event: Event }
  | { readonly type: "cancel"; readonly name: TimerName }
  | {
      readonly type: "overlay";
      readonly title: string;
      readonly text: string;
      readonly button: string;
      readonly click: Event;
    }
  | { readonly type: "hide-overlay" }
  | { readonly type: "banner"; readonly text: string; readonly button: string; readonly click: Event }
  | { readonly type: "hide-banner" }
  | { readonly type: "clear-screen"; readonly newShell: boolean } // RIS; a new shell's title is moot
  | { readonly type: "greet" } // after hello: announce flow control, send the size, start pings
  | { readonly type: "signal-activity" } // an empty input frame: "the user is here"
  | { readonly type: "discard-output" } // Ctrl-C flushed the tty: drop the backlog
  | { readonly type: "focus" }
  | { readonly type: "warn"; readonly text: string };

export interface Step {
  readonly state: Model;
  readonly effects: readonly Effect[];
}

/** What the table may not look up itself: the time (ms) and a random number in [0, 1). */
export interface Env {
  readonly now: number;
  readonly random: number;
}

/** A shell is attached: leaving the page asks first. */
export function attached(phase: Phase): boolean {
  return phase === "live" || phase === "idle-warning";
}

const START: Event = { type: "start" };
const NOTHING: readonly Effect[] = [];

function overlay(title: string, text: string, button: string, click: Event = START): Effect {
  return { type: "overlay", title, text, button, click };
}

function banner(text: string, button: string, click: Event): Effect {
  return { type: "banner", text, button, click };
}

function timer(name: TimerName, after: number, event: Event): Effect {
  return { type: "timer", name, after, event };
}

export function next(model: Model, event: Event, env: Env): Step {
  const fx: Effect[] = [];
  const state = step(model, event, env, fx);
  return { state, effects: fx.length === 0 ? NOTHING : fx };
}

function step(m: Model, event: Event, env: Env, fx: Effect[]): Model {
  switch (event.type) {
    case "start":
      if (event.reset === "errors") {
        m = { ...m, internalErrors: 0 };
      } else if (event.reset === "token") {
        m = { ...m, tokenRetried: false };
      }
      return start(m, fx);
    case "allocated":
      return allocated({ ...m, requesting: false }, event.allocation, fx);
    case "refused": {
      const { refusal } = event;
      m = { ...m, requesting: false };
      if (m.phase === "reconnecting" && refusal.retryAfter === null && refusal.status >= 500) {
        // a proxy in front of a restarting webserver (502, 504): more of the same outage
        return reconnect(m, `HTTP ${refusal.status}`, `The server answered HTTP ${refusal.status}`, env, fx);
      }
      return refused(m, refusal, fx);
    }
    case "unreachable":
      return reconnect({ ...m, requesting: false }, "cannot reach the server", "Connection lost", env, fx);
    case "message":
      return event.socket === m.socket ? message(m, event.message, env, fx) : m;
    case "output":
      // after hello, output: this terminal works
      if (event.socket !== m.socket || m.phase === "starting" || m.phase === "reconnecting") {
        return m;
      }
      return m.internalErrors === 0 ? m : { ...m, internalErrors: 0 };
    case "closed":
      return event.socket === m.socket ? closed(m, event.socket, event.code, event.reason, env, fx) : m;
    case "busy-tick": {
      const left = (m.busy?.left ?? 1) - 1;
      if (m.busy === null || left <= 0) {
        return start({ ...m, busy: null }, fx);
      }
      return busy(m, left, m.busy.title, fx);
    }
    case "idle-tick":
      return idleWarning(m, env, fx);
    case "idle-quiet":
    case "input":
      return active(m, fx);
    case "stay":
      fx.push({ type: "signal-activity" });
      m = active(m, fx);
      fx.push({ type: "focus" });
      return m;
    case "dismiss":
      return hideBanner(m, fx);
    case "catch-up":
      if (m.phase !== "live" || m.socket === null) {
        return m; // a connection under way replays the scrollback anyway
      }
      fx.push({ type: "disconnect" }); // its close is ours: not a dropped connection
      return start({ ...m, socket: null, phase: "reconnecting", status: "catching up…" }, fx);
  }
}

function start(m: Model, fx: Effect[]): Model {
  if (m.requesting) {
    return m; // a double click, or a click while the scheduled retry runs: join it
  }
  fx.push({ type: "cancel", name: "retry" }, { type: "hide-overlay" }, { type: "request" });
  if (m.phase !== "reconnecting") {
    m = { ...m, phase: "starting", status: "starting your terminal…" };
  }
  return { ...m, requesting: true };
}

function allocated(m: Model, allocation: Allocation, fx: Effect[]): Model {
  if (m.lastTerminal !== null && !allocation.reconnect) {
    // We were on a terminal and the manager no longer has it for us: it was deleted,
    // crashed or recycled. Say so rather than slip the user into a stranger's fresh shell.
    return terminalGone(m, m.lastTerminal, fx);
  }
  if (allocation.reconnect && allocation.terminal === m.endedTerminal && m.freshRetries < FRESH_RETRIES) {
    // "new terminal" right after the end: the terminal's report of it has not reached the
    // manager yet, which still has the ended one for us. Ask again in a moment rather
    // than attach to a shell that is gone (and show "session ended" once more).
    fx.push(timer("retry", FRESH_RETRY_MS, START));
    return { ...m, freshRetries: m.freshRetries + 1 };
  }
  const socket = m.sockets + 1; // the old socket's events are no longer ours to handle
  fx.push({ type: "connect", socket, url: allocation.url, token: allocation.token });
  return {
    ...m,
    socket,
    sockets: socket,
    endedSocket: null,
    endedTerminal: null,
    freshRetries: 0,
    serverError: null,
  };
}

function terminalGone(m: Model, name: string, fx: Effect[]): Model {
  fx.push({ type: "cancel", name: "retry" });
  m = hideBanner({ ...m, lastTerminal: null, phase: "ended", status: "terminal gone" }, fx);
  const text = `${name} was stopped (deleted, restarted or recycled) and its shell and files went with it.`;
  fx.push(overlay("Your terminal is gone", text, "new terminal"));
  return m;
}

function refused(m: Model, refusal: Refusal, fx: Effect[]): Model {
  fx.push({ type: "cancel", name: "retry" }); // the one countdown: an earlier one must not run on
  m = hideBanner(m, fx);
  if (refusal.retryAfter === null) {
    fx.push(overlay("Cannot start a terminal", `${refusal.error} (HTTP ${refusal.status}).`, "try again"));
    return { ...m, phase: "error", status: refusal.error };
  }
  const title = refusal.status === 429 ? "Too many requests" : "All terminals are busy";
  return busy(m, refusal.retryAfter, title, fx);
}

function busy(m: Model, left: number, title: string, fx: Effect[]): Model {
  fx.push(overlay(title, `Retrying in ${left} s…`, "retry now"), timer("retry", BUSY_TICK_MS, { type: "busy-tick" }));
  return { ...m, phase: "busy", status: `no terminal available, retrying in ${left} s`, busy: { left, title } };
}

function message(m: Model, msg: ServerMessage, env: Env, fx: Effect[]): Model {
  switch (msg.type) {
    case "hello":
      return hello(m, msg.terminal, msg.reattached, env, fx);
    case "idle":
      // The server repeats the notice every second while the warning lasts. When they
      // stop, it is over: a notice that was on its way when "stay" was clicked must not
      // leave a stale countdown on screen.
      fx.push(timer("idle-quiet", IDLE_NOTICE_GAP_MS, { type: "idle-quiet" }));
      return idleWarning({ ...m, idleDeadline: env.now + msg.secondsLeft * 1000 }, env, fx);
    case "exit":
      return ended(
        m,
        m.phase === "idle-warning"
          ? "Your terminal was closed after a while without input."
          : `The shell exited with status ${msg.status}.`,
        fx,
      );
    case "error":
      fx.push({ type: "warn", text: msg.message });
      return { ...m, serverError: msg.message };
    case "flush":
      fx.push({ type: "discard-output" }); // Ctrl-C: the backlog is history, as the tty's queue is
      return m;
    case "pong":
    case "download": // the page's files.ts saves it; nothing changes here
    case "size": // a viewer's: main.ts keeps the owner's size
    case "viewers": // the owner's: main.ts shows them in the share panel
      return m;
  }
}

function hello(m: Model, name: string, reattached: boolean, env: Env, fx: Effect[]): Model {
  const restarted = !reattached && m.lastTerminal === name && m.phase === "reconnecting";
  // Start from a clean screen: a reattach replays the scrollback, which would otherwise
  // land below the same output already on screen; a new terminal owes nothing to the
  // old screen.
  fx.push({ type: "clear-screen", newShell: !reattached }, { type: "cancel", name: "retry" }, { type: "hide-overlay" });
  m = hideBanner(m, fx);
  if (restarted) {
    // same terminal, new shell: its server restarted and the old shell did not survive
    fx.push(banner(`${name} restarted: this is a new shell.`, "ok", { type: "dismiss" }));
  }
  fx.push({ type: "greet" }, { type: "focus" });
  return {
    ...m,
    lastTerminal: name,
    tokenRetried: false,
    liveSince: env.now,
    phase: "live",
    status: reattached ? `reconnected to ${name}` : `connected to ${name}`,
  };
}

/** The idle countdown, redrawn every IDLE_TICK_MS until the banner goes. */
function idleWarning(m: Model, env: Env, fx: Effect[]): Model {
  const left = Math.max(0, Math.ceil((m.idleDeadline - env.now) / 1000));
  fx.push(
    banner(`No input for a while: this terminal closes in ${left} s.`, "stay", { type: "stay" }),
    timer("idle-tick", IDLE_TICK_MS, { type: "idle-tick" }),
  );
  return { ...m, phase: "idle-warning", status: `idle: closing in ${left} s` };
}

function active(m: Model, fx: Effect[]): Model {
  if (m.phase !== "idle-warning") {
    return m;
  }
  return hideBanner({ ...m, phase: "live", status: "connected" }, fx);
}

function hideBanner(m: Model, fx: Effect[]): Model {
  fx.push({ type: "hide-banner" }, { type: "cancel", name: "idle-tick" }, { type: "cancel", name: "idle-quiet" });
  return m;
}

function ended(m: Model, text: string, fx: Effect[]): Model {
  fx.push({ type: "cancel", name: "retry" });
  m = hideBanner(m, fx);
  // "new terminal" asks again as the same tab: the old terminal was recycled, so the
  // manager hands out a fresh one.
  fx.push(overlay("Session ended", text, "new terminal"));
  return {
    ...m,
    endedTerminal: m.lastTerminal ?? m.endedTerminal,
    endedSocket: m.socket, // it stays open to acknowledge the tail; its close is expected
    lastTerminal: null, // the next terminal is a new one, and expected to be
    phase: "ended",
    status: "session ended",
  };
}

function closed(m: Model, socket: number, code: number, reason: string, env: Env, fx: Effect[]): Model {
  fx.push({ type: "disconnect" });
  if (socket === m.endedSocket) {
    // Its session already ended (the `exit` message came first): the close that follows
    // is no news, and by now the user may have asked for a new terminal.
    return { ...m, socket: null, endedSocket: null };
  }
  m = { ...m, socket: null };
  m = hideBanner(m, fx);
  if (m.phase === "ended" || m.phase === "error" || m.phase === "busy") {
    return m;
  }
  if (code === CloseCode.NORMAL) {
    return ended(m, "The session ended.", fx);
  }
  if (code === CloseCode.SUPERSEDED) {
    const text = "Another tab or window took it over. Take it back here?";
    fx.push(overlay("This terminal was opened elsewhere", text, "take it back"));
    return { ...m, phase: "error", status: "opened elsewhere" };
  }
  if (code === CloseCode.REVOKED) {
    // a share link's viewer: the owner revoked the link, which the terminal now refuses
    const text = "The terminal's owner revoked the link you opened. Ask them for a new one.";
    fx.push(overlay("This share link was revoked", text, "try again", { type: "start", reset: "token" }));
    return { ...m, phase: "error", status: "link revoked" };
  }
  if (code === CloseCode.UNAUTHORIZED && !m.tokenRetried) {
    return start({ ...m, tokenRetried: true }, fx); // a fresh token, once
  }
  if (code === CloseCode.INTERNAL_ERROR) {
    // The terminal failed (its shell could not start, say): worth a retry or two, but
    // not forever, and the user should read why.
    const why = m.serverError ?? (reason || "the terminal failed");
    m = { ...m, internalErrors: m.internalErrors + 1 };
    if (m.internalErrors < INTERNAL_ERROR_LIMIT) {
      return reconnect(m, why, capitalize(why), env, fx);
    }
    const again: Event = { type: "start", reset: "errors" };
    fx.push(overlay("The terminal cannot start", `${capitalize(why)}.`, "try again", again));
    return { ...m, phase: "error", status: why };
  }
  if (code === CloseCode.UNAUTHORIZED || code === CloseCode.FORBIDDEN_ORIGIN) {
    const again: Event = { type: "start", reset: "token" };
    fx.push(overlay("Connection refused", reason || "The terminal refused this page.", "try again", again));
    return { ...m, phase: "error", status: "refused" };
  }
  return reconnect(m, reason || "connection lost", "Connection lost", env, fx);
}

/** Retry after the next backoff delay; `why` goes to the status line, `headline` to the
 * banner. */
function reconnect(m: Model, why: string, headline: string, env: Env, fx: Effect[]): Model {
  const backoff = m.liveSince && env.now - m.liveSince > STABLE_MS ? BACKOFF_START_MS : m.backoffMs;
  const delay = backoff * (0.75 + env.random * 0.5);
  const text = `${headline} — reconnecting in ${Math.ceil(delay / 1000)} s…`;
  fx.push(banner(text, "now", START), timer("retry", delay, START));
  return {
    ...m,
    liveSince: 0,
    backoffMs: Math.min(backoff * 2, BACKOFF_MAX_MS),
    phase: "reconnecting",
    status: `${why}: reconnecting…`,
  };
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
