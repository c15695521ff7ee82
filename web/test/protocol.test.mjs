// The page's side of the wire protocol: control messages in, the allocation answer.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  MAX_CONTROL_MESSAGE_BYTES,
  MalformedMessage,
  decodeAnswer,
  decodeServerMessage,
  encodeAck,
  encodeResize,
  encodeRevoke,
  isRefusal,
  subprotocolsFor,
} from "../src/protocol.ts";

test("every server message decodes into its typed form", () => {
  const cases = [
    ['{"type":"hello","terminal":"t-1","reattached":true}', { type: "hello", terminal: "t-1", reattached: true, role: "owner" }],
    ['{"type":"hello","terminal":"t-1","reattached":true,"role":"view"}', { type: "hello", terminal: "t-1", reattached: true, role: "view" }],
    ['{"type":"size","cols":100,"rows":30}', { type: "size", cols: 100, rows: 30 }],
    [
      '{"type":"viewers","viewers":[{"id":1,"link":"a-B_9","mode":"type"}]}',
      { type: "viewers", viewers: [{ id: 1, link: "a-B_9", mode: "type" }] },
    ],
    ['{"type":"idle","seconds_left":30}', { type: "idle", secondsLeft: 30 }],
    ['{"type":"exit","status":-1}', { type: "exit", status: -1 }],
    ['{"type":"error","message":"no"}', { type: "error", message: "no" }],
    ['{"type":"pong"}', { type: "pong" }],
    ['{"type":"flush","extra":1}', { type: "flush" }],
    ['{"type":"download","id":"a_b","name":"r.txt","size":12}', { type: "download", id: "a_b", name: "r.txt", size: 12 }],
  ];
  for (const [text, message] of cases) {
    assert.deepEqual(decodeServerMessage(text), message, text);
  }
});

test("anything else is refused with MalformedMessage", () => {
  const garbage = [
    "",
    "not json",
    "[]",
    "null",
    '"hello"',
    "{}",
    '{"type":7}',
    '{"type":"resize","cols":80,"rows":24}', // a client message, not a server one
    '{"type":"newer-feature"}',
    '{"type":"hello","terminal":"t-1"}',
    '{"type":"hello","terminal":1,"reattached":false}',
    '{"type":"hello","terminal":"t-1","reattached":"yes"}',
    '{"type":"idle","seconds_left":2.5}',
    '{"type":"idle","seconds_left":-1}',
    '{"type":"idle","seconds_left":"3"}',
    '{"type":"idle","seconds_left":true}',
    '{"type":"exit"}',
    '{"type":"exit","status":1e12}',
    '{"type":"error","message":null}',
    '{"type":"download","id":"a","name":"r.txt"}',
    '{"type":"download","id":1,"name":"r.txt","size":1}',
    '{"type":"download","id":"a","name":"r.txt","size":-1}',
    `{"type":"pong","pad":"${"x".repeat(MAX_CONTROL_MESSAGE_BYTES)}"}`,
  ];
  for (const text of garbage) {
    assert.throws(() => decodeServerMessage(text), MalformedMessage, text.slice(0, 60));
  }
});

test("client messages are compact JSON, as protocol.py decodes them", () => {
  assert.equal(encodeAck(65536), '{"type":"ack","bytes":65536}');
  assert.equal(encodeResize(80, 24), '{"type":"resize","cols":80,"rows":24}');
  assert.deepEqual(subprotocolsFor("abc"), ["webterm.v1", "webterm.token.abc"]);
});

test("an allocation is validated", () => {
  const body = { terminal: "t-1", url: "ws://h/terminals/t-1/ws", token: "tok", reconnect: false, client: "c-1" };
  assert.deepEqual(decodeAnswer(200, body, null), body);
  assert.equal(decodeAnswer(200, { ...body, client: null }, null).client, null);
  assert.equal(decodeAnswer(200, { ...body, client: undefined }, null).client, null);
  for (const broken of [{}, null, "x", { ...body, reconnect: "no" }, { ...body, url: 5 }, { ...body, client: 5 }]) {
    const answer = decodeAnswer(200, broken, null);
    assert.ok(isRefusal(answer), JSON.stringify(broken));
    assert.equal(answer.retryAfter, null);
  }
});

test("busy answers carry a delay: the body's, else the header's, else a default", () => {
  assert.deepEqual(decodeAnswer(503, { error: "busy", retry_after: 7 }, "3"), { status: 503, error: "busy", retryAfter: 7 });
  assert.equal(decodeAnswer(429, { error: "slow down" }, "3").retryAfter, 3);
  assert.equal(decodeAnswer(503, {}, null).retryAfter, 5);
  assert.equal(decodeAnswer(503, { retry_after: 0.2 }, null).retryAfter, 1); // at least a second
  assert.equal(decodeAnswer(429, { retry_after: 2.1 }, null).retryAfter, 3);
});

test("other refusals are final and name the status when the body does not explain", () => {
  assert.deepEqual(decodeAnswer(403, { error: "origin not allowed" }, null), {
    status: 403,
    error: "origin not allowed",
    retryAfter: null,
  });
  assert.deepEqual(decodeAnswer(502, {}, "5"), { status: 502, error: "HTTP 502", retryAfter: null });
});

test("share messages: a bad role, size or viewer is refused; revoke encodes", () => {
  for (const text of [
    '{"type":"hello","terminal":"t","reattached":true,"role":"admin"}',
    '{"type":"size","cols":0,"rows":30}',
    '{"type":"viewers","viewers":{}}',
    '{"type":"viewers","viewers":[{"id":1,"link":"a b","mode":"view"}]}',
    '{"type":"viewers","viewers":[{"id":1,"link":"ab","mode":"all"}]}',
  ]) {
    assert.throws(() => decodeServerMessage(text), MalformedMessage, text);
  }
  assert.equal(encodeRevoke("link-1"), '{"type":"revoke","link":"link-1"}');
});
