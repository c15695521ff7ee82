// Output flow control without a browser: a terminal that parses when told to, a socket
// that records acks.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ACK_DELAY_MS, ACK_EVERY, Output, WRITE_SLICE } from "../src/output.ts";

class Sink {
  constructor() {
    this.parsing = []; // [data, done] handed to the terminal, not yet parsed
    this.acks = [];
    this.isHidden = false;
    this.socket = 1;
    this.open = true;
  }

  write(data, done) {
    this.parsing.push([data, done]);
  }

  hidden() {
    return this.isHidden;
  }

  current() {
    return this.socket;
  }

  send(text) {
    if (!this.open) {
      return false;
    }
    this.acks.push(JSON.parse(text).bytes);
    return true;
  }

  /** The terminal parses everything it has been given, and what that lets through. */
  parseAll() {
    let parsed = 0;
    while (this.parsing.length > 0) {
      const [data, done] = this.parsing.shift();
      parsed += data.length;
      done();
    }
    return parsed;
  }
}

const bytes = (n) => new Uint8Array(n);

test("one write at a time, in slices", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const sink = new Sink();
  const output = new Output(sink, 1 << 20);
  output.show(bytes(WRITE_SLICE * 2 + 1), 1);
  assert.equal(sink.parsing.length, 1);
  assert.equal(sink.parseAll(), WRITE_SLICE * 2 + 1);
});

test("parsed output is acknowledged in batches: at once past ACK_EVERY, else after a delay", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const sink = new Sink();
  const output = new Output(sink, 1 << 20);
  output.show(bytes(1000), 1);
  sink.parseAll();
  assert.deepEqual(sink.acks, []);
  t.mock.timers.tick(ACK_DELAY_MS);
  assert.deepEqual(sink.acks, [1000]);
  output.show(bytes(ACK_EVERY), 1);
  sink.parseAll();
  assert.deepEqual(sink.acks, [1000, ACK_EVERY]);
});

test("a replaced socket's output is dropped and never acknowledged; the page's own writes stay", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const sink = new Sink();
  const output = new Output(sink, 1 << 20);
  output.show(bytes(10), 1); // being parsed
  output.show(bytes(20), 1); // queued
  output.show("\x1bc", null);
  sink.socket = 2;
  output.reset();
  assert.equal(sink.parseAll(), 10 + "\x1bc".length);
  t.mock.timers.tick(ACK_DELAY_MS);
  assert.deepEqual(sink.acks, []);
});

test("a flush drops the unparsed backlog and acknowledges it at once", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const sink = new Sink();
  const output = new Output(sink, 1 << 20);
  output.show(bytes(WRITE_SLICE * 3), 1); // one slice with the terminal, two queued
  output.discard();
  assert.deepEqual(sink.acks, [WRITE_SLICE * 2]);
  assert.equal(sink.parseAll(), WRITE_SLICE);
});

test("a hidden tab acknowledges on receipt, drops past its backlog, and catches up once shown", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const sink = new Sink();
  const output = new Output(sink, 1000);
  sink.isHidden = true;
  output.show(bytes(600), 1);
  output.show(bytes(600), 1); // over the backlog: dropped, and everything unparsed with it
  t.mock.timers.tick(ACK_DELAY_MS);
  assert.deepEqual(sink.acks, [1200]); // the server is never held up by a hidden tab
  assert.equal(output.takeBehind(), false); // still hidden
  sink.isHidden = false;
  assert.equal(output.takeBehind(), true);
  assert.equal(output.takeBehind(), false); // once
  sink.parseAll();
  t.mock.timers.tick(ACK_DELAY_MS);
  assert.deepEqual(sink.acks, [1200]); // acknowledged already: not twice
});

test("an ack that cannot be sent is kept for the next one", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const sink = new Sink();
  const output = new Output(sink, 1 << 20);
  sink.open = false;
  output.show(bytes(100), 1);
  sink.parseAll();
  t.mock.timers.tick(ACK_DELAY_MS);
  sink.open = true;
  output.show(bytes(50), 1);
  sink.parseAll();
  t.mock.timers.tick(ACK_DELAY_MS);
  assert.deepEqual(sink.acks, [150]);
});
