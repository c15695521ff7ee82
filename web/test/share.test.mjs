// share.ts's pure part: the share token a viewer's page was opened with.
import assert from "node:assert/strict";
import { test } from "node:test";

import { describe, sharedToken } from "../src/share.ts";

test("a viewer's page finds its token in the fragment, an owner's page none", () => {
  assert.equal(sharedToken("#share=aaa.bbb.ccc"), "aaa.bbb.ccc");
  assert.equal(sharedToken("#x=1&share=t-_0"), "t-_0");
  assert.equal(sharedToken(""), null);
  assert.equal(sharedToken("#share="), null);
  assert.equal(sharedToken("#other=1"), null);
});

test("modes in words", () => {
  assert.equal(describe("view"), "view only");
  assert.equal(describe("type"), "can type");
});
