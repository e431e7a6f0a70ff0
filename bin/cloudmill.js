#!/usr/bin/env node
// The installed entry point: the compiled CLI (built by `npm install` through `prepare`).
import { runCli } from "../dist/lib/cli/main.js";
import { processIO } from "../dist/lib/cli/io.js";

// A reader that stops early (`| head`) is not an error: stop quietly, as cat and grep do.
process.stdout.on("error", (err) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const controller = new AbortController();
let interrupted = false;
process.on("SIGINT", () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  controller.abort();
});
process.exitCode = await runCli(process.argv.slice(2), processIO(controller.signal));
