#!/usr/bin/env node
// The installed entry point: the compiled CLI (built by `npm install` through `prepare`).
import { runCli } from "../dist/lib/cli/main.js";
import { processIO } from "../dist/lib/cli/io.js";

const controller = new AbortController();
let interrupted = false;
process.on("SIGINT", () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  controller.abort();
});
process.exitCode = await runCli(process.argv.slice(2), processIO(controller.signal));
