// The worker container's entry (Dockerfile: node dist/worker/main.js); tests run this same file.
import { runWorker } from "../lib/aws/runWorker.js";

try {
  await runWorker(process.env);
} catch (err) {
  process.stderr.write(`${JSON.stringify({ level: "ERROR", message: "worker crashed", error: (err as Error).message })}\n`);
  process.exitCode = 1;
}
