#!/usr/bin/env node
// The installed entry point. It runs the CLI's bundle (dist/assets/cli/, built by `npm install`
// through `prepare`): one file to load instead of some 230 modules. The compiled modules run
// instead when the bundle is missing or older than them (a `tsc`-only rebuild).
import { statSync } from "node:fs";
import module from "node:module";

// Node 22 keeps the compiled code between runs (Node 20 has no such cache).
module.enableCompileCache?.();

// The AWS SDK warns every Node 20 process that its releases from 2027 need Node 22. The release
// this package pins runs on Node 20, so the warning (nine lines on stderr) says nothing to a user.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const modified = (file) => statSync(new URL(file, import.meta.url), { throwIfNoEntry: false })?.mtimeMs ?? -1;
const BUNDLE = "../dist/assets/cli/main.mjs";
const COMPILED = "../dist/lib/cli/entry.js";
const { runCli, processIO } = await import(modified(BUNDLE) >= modified(COMPILED) ? BUNDLE : COMPILED);

// A reader that stops early (`| head`) is not an error: stop quietly, as cat and grep do.
process.stdout.on("error", (err) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

// Ctrl-C, `timeout`, a service manager's stop and a closed terminal all stop a command the same
// way: what it started is stopped and its work files removed. A second signal exits at once.
const controller = new AbortController();
let stoppedBy = 0;
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
  ["SIGHUP", 129],
]) {
  process.on(signal, () => {
    if (stoppedBy) process.exit(code);
    stoppedBy = code;
    controller.abort();
  });
}
const code = await runCli(process.argv.slice(2), processIO(controller.signal));
// Stopped: the shell's 128 + the signal's number, as if it had ended the process.
process.exitCode = stoppedBy && code === 130 ? stoppedBy : code;
