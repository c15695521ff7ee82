// The key bar's sticky modifiers, its arrows in both cursor-key modes, and the page's
// own shortcuts, without a browser.
import assert from "node:assert/strict";
import { test } from "node:test";

import { NO_MODIFIERS, applyModifiers, arrowKey, ctrlChar, shortcut } from "../src/keys.ts";

const CTRL = { ctrl: true, alt: false };
const ALT = { ctrl: false, alt: true };
const BOTH = { ctrl: true, alt: true };

test("Ctrl turns a letter into its control character, either case", () => {
  assert.equal(ctrlChar("c"), "\x03");
  assert.equal(ctrlChar("C"), "\x03");
  assert.equal(ctrlChar("a"), "\x01");
  assert.equal(ctrlChar("z"), "\x1a");
  assert.equal(ctrlChar("d"), "\x04");
});

test("Ctrl on the punctuation xterm maps", () => {
  assert.equal(ctrlChar("@"), "\x00");
  assert.equal(ctrlChar(" "), "\x00");
  assert.equal(ctrlChar("["), "\x1b");
  assert.equal(ctrlChar("\\"), "\x1c");
  assert.equal(ctrlChar("]"), "\x1d");
  assert.equal(ctrlChar("^"), "\x1e");
  assert.equal(ctrlChar("_"), "\x1f");
  assert.equal(ctrlChar("/"), "\x1f");
  assert.equal(ctrlChar("?"), "\x7f");
  assert.equal(ctrlChar("é"), null);
  assert.equal(ctrlChar("1"), null);
  assert.equal(ctrlChar("ab"), null);
});

test("sticky Ctrl: 'c' becomes ^C and the modifier is used up", () => {
  assert.deepEqual(applyModifiers("c", CTRL), { data: "\x03", used: true });
});

test("sticky Alt puts ESC before the key", () => {
  assert.deepEqual(applyModifiers("b", ALT), { data: "\x1bb", used: true });
  assert.deepEqual(applyModifiers("\x1b", ALT), { data: "\x1b\x1b", used: true });
});

test("Ctrl and Alt together: ESC then the control character", () => {
  assert.deepEqual(applyModifiers("x", BOTH), { data: "\x1b\x18", used: true });
});

test("a key Ctrl cannot change is sent as it is, and the modifier is used up", () => {
  assert.deepEqual(applyModifiers("1", CTRL), { data: "1", used: true });
});

test("a composed word from an on-screen keyboard: Ctrl applies to its first letter", () => {
  assert.deepEqual(applyModifiers("cd", CTRL), { data: "\x03d", used: true });
});

test("without modifiers nothing changes", () => {
  assert.deepEqual(applyModifiers("c", NO_MODIFIERS), { data: "c", used: false });
});

test("the terminal's own reports pass untouched and leave the modifiers latched", () => {
  assert.deepEqual(applyModifiers("\x1b[12;1R", CTRL), { data: "\x1b[12;1R", used: false });
  assert.deepEqual(applyModifiers("\x1b[I", ALT), { data: "\x1b[I", used: false });
  assert.deepEqual(applyModifiers("", CTRL), { data: "", used: false });
});

test("arrows in normal cursor mode are CSI", () => {
  assert.equal(arrowKey("up", false), "\x1b[A");
  assert.equal(arrowKey("down", false), "\x1b[B");
  assert.equal(arrowKey("right", false), "\x1b[C");
  assert.equal(arrowKey("left", false), "\x1b[D");
});

test("arrows in application cursor mode are SS3", () => {
  assert.equal(arrowKey("up", true), "\x1bOA");
  assert.equal(arrowKey("down", true), "\x1bOB");
  assert.equal(arrowKey("right", true), "\x1bOC");
  assert.equal(arrowKey("left", true), "\x1bOD");
});

test("modified arrows carry xterm's modifier parameter in either mode", () => {
  assert.equal(arrowKey("left", false, CTRL), "\x1b[1;5D");
  assert.equal(arrowKey("left", true, CTRL), "\x1b[1;5D");
  assert.equal(arrowKey("up", false, ALT), "\x1b[1;3A");
  assert.equal(arrowKey("right", true, BOTH), "\x1b[1;7C");
});

const key = (k, mods = {}) => ({ key: k, ctrlKey: false, shiftKey: false, altKey: false, metaKey: false, ...mods });

test("the page's shortcuts", () => {
  assert.equal(shortcut(key("F", { ctrlKey: true, shiftKey: true })), "search");
  assert.equal(shortcut(key("f", { ctrlKey: true, shiftKey: true })), "search");
  assert.equal(shortcut(key("=", { ctrlKey: true })), "font-larger");
  assert.equal(shortcut(key("+", { ctrlKey: true, shiftKey: true })), "font-larger");
  assert.equal(shortcut(key("-", { ctrlKey: true })), "font-smaller");
  assert.equal(shortcut(key("0", { ctrlKey: true })), "font-reset");
});

test("everything else stays the shell's", () => {
  assert.equal(shortcut(key("f", { ctrlKey: true })), null); // readline's forward-char
  assert.equal(shortcut(key("c", { ctrlKey: true })), null);
  assert.equal(shortcut(key("_", { ctrlKey: true, shiftKey: true })), null); // C-_ undo
  assert.equal(shortcut(key("=")), null);
  assert.equal(shortcut(key("=", { ctrlKey: true, altKey: true })), null);
  assert.equal(shortcut(key("F", { ctrlKey: true, shiftKey: true, metaKey: true })), null);
});
