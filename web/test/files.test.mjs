// files.ts's pure parts: where the files endpoint is, and the name a download is saved as.
import assert from "node:assert/strict";
import { test } from "node:test";

globalThis.location = { href: "http://page.example:8080/" };
const { filesUrl, safeName } = await import("../src/files.ts");

test("the files endpoint sits beside the terminal's WebSocket", () => {
  assert.equal(filesUrl("ws://page.example:8080/terminals/terminal-0/ws"), "http://page.example:8080/terminals/terminal-0/files");
  assert.equal(filesUrl("wss://h.example/terminals/t-1/ws"), "https://h.example/terminals/t-1/files");
  assert.equal(filesUrl("ws://10.0.0.5:31000/ws"), "http://10.0.0.5:31000/files");
});

test("a download is saved under a name without a path, control characters or a leading dot", () => {
  assert.equal(safeName("report.pdf"), "report.pdf");
  assert.equal(safeName("../../etc/passwd"), "_.._etc_passwd");
  assert.equal(safeName(".bashrc"), "bashrc");
  assert.equal(safeName("a\u0000b\nc"), "a_b_c");
  assert.equal(safeName(""), "download");
  assert.equal(safeName("x".repeat(300)).length, 200);
});
