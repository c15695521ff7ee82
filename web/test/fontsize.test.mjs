import assert from "node:assert/strict";
import { test } from "node:test";

import { DEFAULT_FONT_SIZE, MAX_FONT_SIZE, MIN_FONT_SIZE, clampFontSize } from "../src/fontsize.ts";

test("a stored or scaled size is rounded and kept within bounds", () => {
  assert.equal(clampFontSize("16"), 16);
  assert.equal(clampFontSize(15.6), 16);
  assert.equal(clampFontSize(2), MIN_FONT_SIZE);
  assert.equal(clampFontSize(400), MAX_FONT_SIZE);
});

test("garbage gives the default", () => {
  assert.equal(clampFontSize("large"), DEFAULT_FONT_SIZE);
  assert.equal(clampFontSize(null), DEFAULT_FONT_SIZE);
  assert.equal(clampFontSize(-3), DEFAULT_FONT_SIZE);
  assert.equal(clampFontSize(Number.NaN), DEFAULT_FONT_SIZE);
});
