// The worker container's entry (bundled as worker/main.mjs, which the Dockerfile runs); tests run this same file.
import { runWorker } from "../lib/aws/runWorker.js";

try {
  await runWorker(process.env);
} catch (err) {
  process.stderr.write(`${JSON.stringify({ level: "ERROR", message: "worker crashed", error: (err as Error).message })}\n`);
  process.exitCode = 1;
}
