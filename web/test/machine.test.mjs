// The page's state table, rule by rule, without a browser: events in, state and effects out.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  BACKOFF_MAX_MS,
  BACKOFF_START_MS,
  FRESH_RETRIES,
  FRESH_RETRY_MS,
  INTERNAL_ERROR_LIMIT,
  STABLE_MS,
  attached,
  initial,
  next,
} from "../src/machine.ts";

const AT = { now: 1_000_000, random: 0.5 }; // random 0.5: no jitter

/** A page driven through events; `effects` holds the last step's. */
class Page {
  constructor() {
    this.state = initial;
    this.effects = [];
  }

  send(event, env = AT) {
    const step = next(this.state, event, env);
    this.state = step.state;
    this.effects = step.effects;
    return this;
  }

  /** The effects of the last step of type `type`. */
  of(type) {
    return this.effects.filter((effect) => effect.type === type);
  }

  one(type) {
    const found = this.of(type);
    assert.equal(found.length, 1, `one ${type} effect in ${JSON.stringify(this.effects)}`);
    return found[0];
  }

  /** The last connect effect's socket, after an allocation. */
  allocate(terminal = "t-1", reconnect = false) {
    this.send({ type: "allocated", allocation: { terminal, url: `ws://x/${terminal}`, token: "tok", reconnect, client: "c" } });
    return this;
  }

  hello(terminal = "t-1", reattached = false, env = AT) {
    return this.send({ type: "message", socket: this.state.socket, message: { type: "hello", terminal, reattached } }, env);
  }

  close(code, reason = "", socket = this.state.socket, env = AT) {
    return this.send({ type: "closed", socket, code, reason }, env);
  }

  exit(status = 0) {
    return this.send({ type: "message", socket: this.state.socket, message: { type: "exit", status } });
  }

  /** Started, allocated and said hello to: live on `terminal`. */
  static live(terminal = "t-1") {
    return new Page().send({ type: "start" }).allocate(terminal).hello(terminal);
  }
}

describe("asking for a terminal", () => {
  test("start asks once, and a second start joins the request under way", () => {
    const page = new Page().send({ type: "start" });
    assert.equal(page.state.phase, "starting");
    assert.equal(page.state.requesting, true);
    page.one("request");
    page.send({ type: "start" });
    assert.deepEqual(page.effects, []); // no second request, no second countdown
  });

  test("an allocation opens a numbered socket; hello makes the page live", () => {
    const page = new Page().send({ type: "start" }).allocate("t-1");
    const connect = page.one("connect");
    assert.deepEqual(connect, { type: "connect", socket: 1, url: "ws://x/t-1", token: "tok" });
    assert.equal(page.state.requesting, false);
    assert.equal(page.state.phase, "starting");
    page.hello("t-1");
    assert.equal(page.state.phase, "live");
    assert.equal(page.state.status, "connected to t-1");
    assert.deepEqual(page.one("clear-screen"), { type: "clear-screen", newShell: true });
    page.one("greet");
    page.one("hide-overlay");
    assert.ok(attached(page.state.phase));
  });

  test("a reattach says so and keeps the title", () => {
    const page = new Page().send({ type: "start" }).allocate("t-1", true).hello("t-1", true);
    assert.equal(page.state.status, "reconnected to t-1");
    assert.deepEqual(page.one("clear-screen"), { type: "clear-screen", newShell: false });
  });

  test("busy counts down each second, then asks again", () => {
    const page = new Page().send({ type: "start" });
    page.send({ type: "refused", refusal: { status: 429, error: "too many", retryAfter: 2 } });
    assert.equal(page.state.phase, "busy");
    assert.equal(page.state.status, "no terminal available, retrying in 2 s");
    assert.equal(page.one("overlay").title, "Too many requests");
    assert.deepEqual(page.one("timer"), { type: "timer", name: "retry", after: 1000, event: { type: "busy-tick" } });
    page.send({ type: "busy-tick" });
    assert.equal(page.one("overlay").text, "Retrying in 1 s…");
    page.send({ type: "busy-tick" });
    page.one("request");
    assert.equal(page.state.phase, "starting");
  });

  test("a 503 is 'all terminals are busy'", () => {
    const page = new Page().send({ type: "start" });
    page.send({ type: "refused", refusal: { status: 503, error: "busy", retryAfter: 3 } });
    assert.equal(page.one("overlay").title, "All terminals are busy");
  });

  test("a final refusal shows an error with 'try again'", () => {
    const page = new Page().send({ type: "start" });
    page.send({ type: "refused", refusal: { status: 403, error: "forbidden", retryAfter: null } });
    assert.equal(page.state.phase, "error");
    const overlay = page.one("overlay");
    assert.equal(overlay.text, "forbidden (HTTP 403).");
    page.send(overlay.click);
    page.one("request");
  });

  test("a gateway error is an outage while reconnecting, final when starting", () => {
    const refusal = { status: 502, error: "HTTP 502", retryAfter: null };
    const starting = new Page().send({ type: "start" }).send({ type: "refused", refusal });
    assert.equal(starting.state.phase, "error");
    const page = Page.live().close(1006);
    page.send({ type: "start" }).send({ type: "refused", refusal });
    assert.equal(page.state.phase, "reconnecting");
    assert.equal(page.state.status, "HTTP 502: reconnecting…");
    assert.match(page.one("banner").text, /^The server answered HTTP 502/);
  });

  test("an unreachable server is retried", () => {
    const page = new Page().send({ type: "start" }).send({ type: "unreachable" });
    assert.equal(page.state.phase, "reconnecting");
    assert.equal(page.state.requesting, false);
    assert.equal(page.one("timer").event.type, "start");
  });

  test("the terminal we were on, gone: say so instead of a stranger's fresh shell", () => {
    const page = Page.live("t-1").close(1006);
    page.send({ type: "start" }).allocate("t-2", false);
    assert.equal(page.state.phase, "ended");
    assert.equal(page.state.status, "terminal gone");
    assert.equal(page.of("connect").length, 0);
    assert.match(page.one("overlay").text, /^t-1 was stopped/);
  });
});

describe("the connection", () => {
  test("a drop reconnects with a doubling, jittered, capped backoff", () => {
    const page = Page.live().close(1006, "", undefined, { now: AT.now, random: 0 });
    assert.equal(page.state.phase, "reconnecting");
    assert.equal(page.state.status, "connection lost: reconnecting…");
    assert.equal(page.one("timer").after, BACKOFF_START_MS * 0.75);
    assert.equal(page.one("banner").text, "Connection lost — reconnecting in 1 s…");
    const delays = [];
    for (let i = 0; i < 8; i++) {
      page.send({ type: "start" }).send({ type: "unreachable" }, { now: AT.now, random: 0.999999 });
      delays.push(Math.round(page.one("timer").after));
    }
    assert.equal(delays[0], Math.round(BACKOFF_START_MS * 2 * 1.25));
    assert.equal(delays.at(-1), Math.round(BACKOFF_MAX_MS * 1.25));
  });

  test("after a stable connection the backoff starts over", () => {
    const page = Page.live().close(1006);
    page.send({ type: "start" }).send({ type: "unreachable" }); // backoff now 4 × start
    page.send({ type: "start" }).allocate("t-1", true).hello("t-1", true, AT);
    page.close(1006, "", undefined, { now: AT.now + STABLE_MS - 1, random: 0.5 });
    assert.equal(page.one("timer").after, BACKOFF_START_MS * 4);
    page.send({ type: "start" }).allocate("t-1", true).hello("t-1", true, AT);
    page.close(1006, "", undefined, { now: AT.now + STABLE_MS + 1, random: 0.5 });
    assert.equal(page.one("timer").after, BACKOFF_START_MS);
  });

  test("the same terminal with a new shell after a reconnect says it restarted", () => {
    const page = Page.live("t-1").close(1006);
    page.send({ type: "start" }).allocate("t-1", true).hello("t-1", false);
    const banner = page.one("banner");
    assert.equal(banner.text, "t-1 restarted: this is a new shell.");
    page.send(banner.click);
    page.one("hide-banner");
  });

  test("4409: another tab took over, offered back, never fought over", () => {
    const page = Page.live().close(4409);
    assert.equal(page.state.phase, "error");
    assert.equal(page.of("timer").length, 0);
    const overlay = page.one("overlay");
    assert.equal(overlay.button, "take it back");
    page.send(overlay.click);
    page.one("request");
  });

  test("4410: a viewer's link was revoked: an error, never an automatic retry", () => {
    const page = Page.live().close(4410);
    assert.equal(page.state.phase, "error");
    assert.equal(page.state.status, "link revoked");
    assert.equal(page.of("timer").length, 0);
    assert.equal(page.one("overlay").title, "This share link was revoked");
  });

  test("4401 gets one fresh token; a second 4401 is an error until 'try again'", () => {
    const page = Page.live().close(4401);
    page.one("request");
    assert.equal(page.state.tokenRetried, true);
    page.allocate("t-1", true).close(4401, "bad token");
    assert.equal(page.state.phase, "error");
    assert.equal(page.state.status, "refused");
    const overlay = page.one("overlay");
    assert.equal(overlay.text, "bad token");
    page.send(overlay.click);
    assert.equal(page.state.tokenRetried, false);
    page.one("request");
  });

  test("1011 is retried with the server's reason, then given up on", () => {
    const page = new Page().send({ type: "start" });
    for (let i = 1; i < INTERNAL_ERROR_LIMIT; i++) {
      page.allocate();
      page.send({ type: "message", socket: page.state.socket, message: { type: "error", message: "shell could not be started" } });
      page.one("warn");
      page.close(1011, "internal error");
      assert.equal(page.state.phase, "reconnecting");
      assert.match(page.one("banner").text, /^Shell could not be started — /);
      page.send({ type: "start" });
    }
    page.allocate().close(1011, "internal error"); // a new socket: the old error message is gone
    assert.equal(page.state.phase, "error");
    assert.equal(page.state.status, "internal error");
    const overlay = page.one("overlay");
    assert.equal(overlay.text, "Internal error.");
    page.send(overlay.click);
    assert.equal(page.state.internalErrors, 0);
    page.one("request");
  });

  test("output after hello means the terminal works: 1011s count from zero again", () => {
    const page = Page.live().close(1011, "failed");
    assert.equal(page.state.internalErrors, 1);
    page.send({ type: "start" }).allocate("t-1", true);
    page.send({ type: "output", socket: page.state.socket }); // before hello: no proof
    assert.equal(page.state.internalErrors, 1);
    page.hello("t-1", true).send({ type: "output", socket: page.state.socket });
    assert.equal(page.state.internalErrors, 0);
  });

  test("a replaced socket's frames and close are not ours", () => {
    const page = Page.live();
    const old = page.state.socket;
    page.send({ type: "start" }).allocate("t-1", true);
    assert.notEqual(page.state.socket, old);
    const before = page.state;
    page.close(1000, "", old);
    assert.equal(page.state, before);
    assert.deepEqual(page.effects, []);
    page.send({ type: "message", socket: old, message: { type: "exit", status: 0 } });
    assert.equal(page.state, before);
  });

  test("a close forgets the socket", () => {
    const page = Page.live().close(1006);
    page.one("disconnect");
    assert.equal(page.state.socket, null);
  });

  test("a flush drops the backlog", () => {
    const page = Page.live();
    page.send({ type: "message", socket: page.state.socket, message: { type: "flush" } });
    page.one("discard-output");
  });

  test("a shown tab that dropped output reattaches for the scrollback", () => {
    const page = Page.live().send({ type: "catch-up" });
    page.one("disconnect");
    page.one("request");
    assert.equal(page.state.phase, "reconnecting");
    assert.equal(page.state.status, "catching up…");
    assert.equal(page.state.socket, null);
    const ended = Page.live().exit().send({ type: "catch-up" });
    assert.deepEqual(ended.effects, []); // nothing to catch up on
  });
});

describe("the end of a session", () => {
  test("exit ends it; 'new terminal' asks again", () => {
    const page = Page.live().exit(3);
    assert.equal(page.state.phase, "ended");
    assert.equal(page.state.status, "session ended");
    const overlay = page.one("overlay");
    assert.equal(overlay.text, "The shell exited with status 3.");
    assert.equal(overlay.button, "new terminal");
    assert.ok(!attached(page.state.phase));
    page.send(overlay.click);
    page.one("request");
  });

  test("a close 1000 without exit ends it too", () => {
    const page = Page.live().close(1000);
    assert.equal(page.state.phase, "ended");
    assert.equal(page.one("overlay").text, "The session ended.");
  });

  test("the ended socket's close is no news, before or after 'new terminal' (2c8a87f)", () => {
    const page = Page.live("t-1").exit();
    const ended = page.state.socket;
    assert.equal(page.state.endedSocket, ended);
    page.close(1000, "", ended); // while the overlay shows
    assert.equal(page.state.phase, "ended");
    assert.equal(page.of("overlay").length, 0);

    const late = Page.live("t-1").exit();
    late.send({ type: "start" }); // "new terminal" before the ended socket closed
    late.close(1000, "", ended);
    assert.equal(late.state.phase, "starting"); // not "ended" a second time
    assert.equal(late.of("overlay").length, 0);
    assert.equal(late.state.endedTerminal, "t-1"); // still known: never attached to again
    late.allocate("t-1", true); // the manager has not heard of the end yet
    assert.equal(late.of("connect").length, 0);
    assert.deepEqual(late.one("timer"), { type: "timer", name: "retry", after: FRESH_RETRY_MS, event: { type: "start" } });
    late.send({ type: "start" }).allocate("t-2", false);
    late.one("connect");
    late.hello("t-2");
    assert.equal(late.state.phase, "live");
    assert.equal(late.state.endedTerminal, null);
  });

  test("'new terminal' asks again while the manager still answers with the ended one, not forever", () => {
    const page = Page.live("t-1").exit();
    page.send({ type: "start" });
    for (let i = 0; i < FRESH_RETRIES; i++) {
      page.allocate("t-1", true);
      assert.equal(page.of("connect").length, 0);
      page.send({ type: "start" });
    }
    page.allocate("t-1", true);
    page.one("connect");
  });

  test("a second end before any new terminal keeps the ended one", () => {
    const page = Page.live("t-1").exit().exit();
    assert.equal(page.state.endedTerminal, "t-1");
    page.send({ type: "start" }).close(1006); // the ended socket goes: no news
    assert.equal(page.state.phase, "starting");
    assert.equal(page.state.endedTerminal, "t-1");
  });
});

describe("idle warnings", () => {
  const idle = (page, secondsLeft, env = AT) =>
    page.send({ type: "message", socket: page.state.socket, message: { type: "idle", secondsLeft } }, env);

  test("a notice counts down in the banner", () => {
    const page = idle(Page.live(), 6);
    assert.equal(page.state.phase, "idle-warning");
    assert.equal(page.state.status, "idle: closing in 6 s");
    assert.equal(page.one("banner").text, "No input for a while: this terminal closes in 6 s.");
    assert.deepEqual(
      page.of("timer").map((t) => t.name).sort(),
      ["idle-quiet", "idle-tick"],
    );
    page.send({ type: "idle-tick" }, { now: AT.now + 1500, random: 0 });
    assert.equal(page.state.status, "idle: closing in 5 s");
    page.send({ type: "idle-tick" }, { now: AT.now + 9000, random: 0 });
    assert.equal(page.state.status, "idle: closing in 0 s");
    assert.ok(attached(page.state.phase));
  });

  test("'stay' signals activity and ends the warning", () => {
    const page = idle(Page.live(), 6);
    page.send(page.one("banner").click);
    page.one("signal-activity");
    page.one("focus");
    page.one("hide-banner");
    assert.deepEqual(page.of("cancel").map((c) => c.name).sort(), ["idle-quiet", "idle-tick"]);
    assert.equal(page.state.phase, "live");
    assert.equal(page.state.status, "connected");
  });

  test("typing ends the warning; the notices stopping ends it too", () => {
    const typed = idle(Page.live(), 6).send({ type: "input" });
    assert.equal(typed.state.phase, "live");
    const quiet = idle(Page.live(), 30).send({ type: "idle-quiet" });
    assert.equal(quiet.state.phase, "live");
    assert.equal(quiet.of("signal-activity").length, 0);
    const live = Page.live().send({ type: "input" });
    assert.deepEqual(live.effects, []);
  });

  test("an exit during the warning was the idle timeout", () => {
    const page = idle(Page.live(), 1).exit(0);
    assert.equal(page.one("overlay").text, "Your terminal was closed after a while without input.");
  });
});

test("the table is pure: the same state and event give the same step, the state untouched", () => {
  const page = Page.live();
  const frozen = JSON.stringify(page.state);
  const event = { type: "closed", socket: page.state.socket, code: 1006, reason: "" };
  const a = next(page.state, event, AT);
  const b = next(page.state, event, AT);
  assert.deepEqual(a, b);
  assert.equal(JSON.stringify(page.state), frozen);
});
