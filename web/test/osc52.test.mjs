// OSC 52 payloads: what a program asks to copy, without a browser.
import assert from "node:assert/strict";
import { test } from "node:test";

import { osc52Text } from "../src/osc52.ts";

const b64 = (text) => Buffer.from(text, "utf-8").toString("base64");

test("the text of a copy to the clipboard", () => {
  assert.equal(osc52Text(`c;${b64("hi")}`), "hi");
  assert.equal(osc52Text(`;${b64("no selection letter")}`), "no selection letter");
  assert.equal(osc52Text(`pc;${b64("héllo ✓")}`), "héllo ✓");
});

test("a query is never answered", () => {
  assert.equal(osc52Text("c;?"), null);
});

test("empty, malformed or non-UTF-8 payloads are ignored", () => {
  assert.equal(osc52Text("c;"), null);
  assert.equal(osc52Text("c"), null);
  assert.equal(osc52Text("c;!!!not base64!!!"), null);
  assert.equal(osc52Text(`c;${Buffer.from([0xff, 0xfe]).toString("base64")}`), null);
});

test("a copy over the limit is refused, not cut", () => {
  assert.equal(osc52Text(`c;${b64("x".repeat(2 * 1024 * 1024))}`), null);
});
