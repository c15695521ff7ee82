// Runs the unit tests (test/*.test.mjs) under node's own test runner, without a browser:
// esbuild bundles each test with the TypeScript modules it imports (types stripped, not
// checked: `npm run typecheck` does that) into node_modules/.cache/, then `node --test`.
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { readdirSync, rmSync } from "node:fs";

const here = new URL(".", import.meta.url).pathname;
const out = new URL("../node_modules/.cache/webterm-test/", import.meta.url).pathname;
const tests = readdirSync(here).filter((name) => name.endsWith(".test.mjs"));
rmSync(out, { recursive: true, force: true });
await build({
  entryPoints: tests.map((name) => here + name),
  outdir: out,
  bundle: true,
  platform: "node",
  format: "esm",
  target: ["node20"],
  outExtension: { ".js": ".mjs" },
  logLevel: "warning",
});
const run = spawnSync(process.execPath, ["--test", "--test-reporter=spec", ...tests.map((name) => out + name)], { stdio: "inherit" });
process.exit(run.status ?? 1);
