// Bundles src/ into ../src/webterm/static/ (index.html, app.js, app.css).
// Deterministic: the same sources and lockfile give byte-identical output.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

const out = new URL("../src/webterm/static/", import.meta.url).pathname;
mkdirSync(out, { recursive: true });
const common = { bundle: true, minify: true, legalComments: "none", logLevel: "info" };
await build({
  ...common,
  entryPoints: ["src/main.ts"],
  outfile: `${out}app.js`,
  format: "iife",
  target: ["es2020"],
});
await build({ ...common, entryPoints: ["src/style.css"], outfile: `${out}app.css` });
copyFileSync("src/index.html", `${out}index.html`);
copyFileSync("src/favicon.svg", `${out}favicon.svg`);
