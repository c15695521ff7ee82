// The connection's watchdog and keepalive without a browser: a stand-in WebSocket, and
// node's mock timers for the clock.
import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { Connection, HELLO_TIMEOUT_MS, INPUT_CHUNK, LATE_MS } from "../src/connection.ts";

class FakeSocket {
  static OPEN = 1;
  static last = null;

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = FakeSocket.OPEN;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.last = this;
  }

  send(data) {
    this.sent.push(data);
  }

  close(code) {
    this.closedWith = code;
  }

  /** The server sends a frame. */
  frame(data) {
    this.onmessage({ data });
  }

  pings() {
    return this.sent.filter((data) => data === '{"type":"ping"}').length;
  }
}

globalThis.window = globalThis;
globalThis.WebSocket = FakeSocket;

const TIMING = { keepaliveMs: 1000, pongTimeoutMs: 500 };

function open(timing = TIMING) {
  const heard = [];
  const connection = new Connection(7, "ws://h/terminals/t/ws", "tok", timing, {
    output: (bytes) => heard.push(["output", bytes.length]),
    message: (message) => heard.push(["message", message]),
    closed: (code, reason) => heard.push(["closed", code, reason]),
  });
  return { connection, socket: FakeSocket.last, heard };
}

let t0;
beforeEach((t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: 1_000_000 });
  t0 = 1_000_000;
});

test("it offers the protocol and the token as subprotocols, never in the URL", () => {
  const { socket } = open();
  assert.equal(socket.url, "ws://h/terminals/t/ws");
  assert.deepEqual(socket.protocols, ["webterm.v1", "webterm.token.tok"]);
});

test("frames are reported: output as bytes, text decoded, garbage dropped", () => {
  const { socket, heard } = open();
  socket.frame(new ArrayBuffer(5));
  socket.frame('{"type":"hello","terminal":"t","reattached":false}');
  socket.frame("not json");
  socket.frame('{"type":"from-the-future"}');
  assert.deepEqual(heard, [
    ["output", 5],
    ["message", { type: "hello", terminal: "t", reattached: false, role: "owner" }],
  ]);
});

test("a socket that never says hello is given up", (t) => {
  const { socket, heard } = open();
  t.mock.timers.tick(HELLO_TIMEOUT_MS - 1);
  assert.deepEqual(heard, []);
  t.mock.timers.tick(1);
  assert.deepEqual(heard, [["closed", 1006, "no answer from the server"]]);
  assert.equal(socket.closedWith, 1000);
  socket.onclose({ code: 1000, reason: "" }); // its own close later: not news
  assert.equal(heard.length, 1);
});

test("pings keep a live path, and a silent one is noticed after a ping", (t) => {
  const { connection, socket, heard } = open();
  socket.frame('{"type":"hello","terminal":"t","reattached":false}');
  connection.startKeepalive();
  for (let i = 1; i <= 3; i++) {
    t.mock.timers.tick(TIMING.keepaliveMs);
    assert.equal(socket.pings(), i);
    socket.frame('{"type":"pong"}');
  }
  t.mock.timers.tick(TIMING.keepaliveMs); // a ping...
  assert.equal(heard.at(-1)[0], "message");
  t.mock.timers.tick(TIMING.pongTimeoutMs); // ...then silence
  assert.deepEqual(heard.at(-1), ["closed", 1006, "no answer from the server"]);
});

test("a watchdog that fires late (the page slept) asks once more before giving up", (t) => {
  const timing = { keepaliveMs: 10_000, pongTimeoutMs: 500 }; // no second ping meanwhile
  const { connection, socket, heard } = open(timing);
  socket.frame('{"type":"hello","terminal":"t","reattached":false}');
  connection.startKeepalive();
  t.mock.timers.tick(timing.keepaliveMs); // ping: expect an answer within pongTimeoutMs
  t.mock.timers.setTime(t0 + timing.keepaliveMs + timing.pongTimeoutMs + LATE_MS + 1000);
  t.mock.timers.tick(0); // the watchdog runs now, late
  assert.equal(heard.length, 1); // only the hello: not given up yet
  assert.equal(socket.pings(), 2);
  socket.frame('{"type":"pong"}'); // the path was fine
  t.mock.timers.tick(timing.pongTimeoutMs);
  assert.equal(heard.length, 2);
  assert.equal(heard.at(-1)[0], "message");
});

test("closed from here, it reports nothing more and sends nothing", () => {
  const { connection, socket, heard } = open();
  connection.close();
  assert.equal(socket.closedWith, 1000);
  socket.frame(new ArrayBuffer(1));
  socket.onclose({ code: 1000, reason: "" });
  assert.deepEqual(heard, []);
  assert.equal(connection.send("x"), false);
});

test("the server's close is reported once", () => {
  const { socket, heard } = open();
  socket.onclose({ code: 4409, reason: "another connection took over this terminal" });
  socket.onclose({ code: 4409, reason: "" });
  assert.deepEqual(heard, [["closed", 4409, "another connection took over this terminal"]]);
});

test("input larger than a frame is split", () => {
  const { connection, socket } = open();
  connection.sendInput(new Uint8Array(INPUT_CHUNK * 2 + 1));
  assert.deepEqual(
    socket.sent.map((data) => data.length),
    [INPUT_CHUNK, INPUT_CHUNK, 1],
  );
});
