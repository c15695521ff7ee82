// xterm.js as the page uses it: theme, addons (fit, WebGL, links, unicode11, search,
// images: sixel and iTerm2's inline images), OSC 52 copies, the renderer choice, copy
// and paste keys and the page's own shortcuts, and fitting the terminal to its element.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { WebglAddon } from "@xterm/addon-webgl";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { Unicode11Addon } from "@xterm/addon-unicode11";
import { SearchAddon } from "@xterm/addon-search";
import { ImageAddon } from "@xterm/addon-image";
import { type Shortcut, shortcut } from "./keys";
import { handleOsc52 } from "./osc52";

const FIT_DELAY_MS = 50; // debounce of window resizes (a drag fires dozens)

const THEME = {
  background: "#0f1419",
  foreground: "#d7dde5",
  cursor: "#5ccfe6",
  cursorAccent: "#0f1419",
  selectionBackground: "#2d4a5f",
  black: "#1c2530",
  red: "#f07178",
  green: "#bae67e",
  yellow: "#ffd580",
  blue: "#73d0ff",
  magenta: "#d4bfff",
  cyan: "#95e6cb",
  white: "#c7cdd5",
  brightBlack: "#5c6773",
  brightRed: "#ff8f95",
  brightGreen: "#d1f5a0",
  brightYellow: "#ffe6a6",
  brightBlue: "#a3e0ff",
  brightMagenta: "#e6d9ff",
  brightCyan: "#b8f2df",
  brightWhite: "#ffffff",
};

export type Renderer = "webgl" | "dom";

export interface PageTerminal {
  readonly term: Terminal;
  readonly search: SearchAddon;
  readonly images: ImageAddon;
  /** Fit the terminal to its element now (after a font size change). */
  fit(): void;
  /** Keep this size whatever the element's (a viewer: the size is the owner's; the
   * element scrolls), instead of fitting. */
  fixSize(cols: number, rows: number): void;
  /** The renderer in use now: WebGL falls back to the DOM when its context is lost. */
  renderer(): Renderer;
}

/** WebGL drawn by the CPU (SwiftShader, llvmpipe: no GPU, as in many VMs and remote
 * desktops) is slower than the DOM renderer, and it is what makes a busy page slow to
 * echo keys. */
function hardwareWebgl(): boolean {
  const gl = document.createElement("canvas").getContext("webgl2");
  if (gl === null) {
    return false;
  }
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const name = String(info === null ? "" : gl.getParameter(info.UNMASKED_RENDERER_WEBGL));
  gl.getExtension("WEBGL_lose_context")?.loseContext();
  return !/swiftshader|llvmpipe|software/i.test(name);
}

/** The terminal in `element`; `wanted` ("webgl", "dom" or null: choose) overrides the
 * renderer choice; `onShortcut` is called on the page's own keys (keys.ts). */
export function openTerminal(
  element: HTMLElement,
  wanted: string | null,
  onShortcut: (shortcut: Shortcut) => void,
): PageTerminal {
  const term = new Terminal({
    allowProposedApi: true, // the unicode11 addon uses term.unicode
    cursorBlink: true,
    fontFamily: getComputedStyle(document.documentElement).getPropertyValue("--mono").trim() || "monospace",
    fontSize: 14,
    scrollback: 10_000,
    theme: THEME,
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.loadAddon(new WebLinksAddon());
  term.loadAddon(new Unicode11Addon());
  term.unicode.activeVersion = "11";
  const search = new SearchAddon();
  term.loadAddon(search);
  // Sixel and iTerm2 (OSC 1337) images; their decoders are WebAssembly, which the page's
  // CSP allows with 'wasm-unsafe-eval' (src/webterm/webserver/security.py).
  const images = new ImageAddon();
  term.loadAddon(images);
  handleOsc52(term);
  term.open(element);

  let renderer: Renderer = "dom";
  try {
    if (wanted === "dom" || (wanted !== "webgl" && !hardwareWebgl())) {
      throw new Error("software WebGL");
    }
    const webgl = new WebglAddon();
    webgl.onContextLoss(() => {
      webgl.dispose(); // the DOM renderer takes over
      renderer = "dom";
    });
    term.loadAddon(webgl);
    renderer = "webgl";
  } catch {
    // no WebGL2, or only in software: the DOM renderer is the faster one then
  }
  let fixed: { cols: number; rows: number } | null = null;
  const refit = (): void => {
    if (fixed === null) {
      fit.fit();
    } else if (term.cols !== fixed.cols || term.rows !== fixed.rows) {
      term.resize(fixed.cols, fixed.rows);
    }
  };
  refit();

  // Ctrl+Shift+C copies the selection, Ctrl+Shift+V pastes (the browser's own paste
  // event, which xterm.js handles); plain Ctrl+C and Ctrl+V stay the shell's keys.
  term.attachCustomKeyEventHandler((event) => {
    const own = shortcut(event);
    if (own !== null) {
      if (event.type === "keydown") {
        onShortcut(own);
      }
      event.preventDefault(); // not the browser's zoom or find either
      return false;
    }
    if (!event.ctrlKey || !event.shiftKey || event.altKey || event.metaKey) {
      return true;
    }
    const key = event.key.toLowerCase();
    if (key === "c") {
      if (event.type === "keydown" && term.hasSelection()) {
        copy(term.getSelection());
      }
      event.preventDefault();
      return false;
    }
    return key !== "v";
  });

  let fitTimer: number | undefined;
  new ResizeObserver(() => {
    window.clearTimeout(fitTimer);
    fitTimer = window.setTimeout(refit, FIT_DELAY_MS);
  }).observe(element);
  void document.fonts?.ready.then(refit);

  const fixSize = (cols: number, rows: number): void => {
    fixed = { cols, rows };
    refit();
  };
  return { term, search, images, fit: refit, fixSize, renderer: () => renderer };
}

function copy(text: string): void {
  // The async clipboard needs a secure context (https or localhost); elsewhere the
  // legacy command copies xterm.js's selection through its own copy handler.
  const legacy = (): void => void document.execCommand("copy");
  if (navigator.clipboard) {
    navigator.clipboard.writeText(text).catch(legacy);
  } else {
    legacy();
  }
}
