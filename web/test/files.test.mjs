// files.ts's pure parts: where the files endpoint is, and the name a download is saved as.
import assert from "node:assert/strict";
import { test } from "node:test";

import { filesUrl, safeName } from "../src/files.ts";

test("the files endpoint is the terminal's, on the page's own webserver", () => {
  assert.equal(filesUrl("terminal-0"), "/terminals/terminal-0/files");
  assert.equal(filesUrl("a/b"), "/terminals/a%2Fb/files");
});

test("a download is saved under a name without a path, control characters or a leading dot", () => {
  assert.equal(safeName("report.pdf"), "report.pdf");
  assert.equal(safeName("../../etc/passwd"), "_.._etc_passwd");
  assert.equal(safeName(".bashrc"), "bashrc");
  assert.equal(safeName("a\u0000b\nc"), "a_b_c");
  assert.equal(safeName(""), "download");
  assert.equal(safeName("x".repeat(300)).length, 200);
});
