/**
 * The dev cloud's worker entry when a test asks for faults: the container's worker loop with
 * a fault injector around its S3 and SQS clients. The faults come as this process's argument
 * (JSON), from the dev cloud that spawned it; the image's entry (worker/main.ts) has no way in.
 */
import type { Logger } from "../core/log.js";
import { FaultInjectingHandler, parseFaultConfig } from "./faultInjection.js";
import { runWorker } from "../aws/runWorker.js";

const faults = parseFaultConfig(process.argv[2] ?? "", "faulty worker argument");
const injectors: FaultInjectingHandler[] = [];
// Each injected fault is logged, so a test can count them across processes.
const onInject = (logger: Logger) => (f: { service: string; operation: string; kind: string; n: number }) =>
  logger.warn("fault injected", { service: f.service, operation: f.operation, kind: f.kind, n: f.n });

try {
  const logger = await runWorker(process.env, {
    wrapHandler: (logger) => (service, handler) => {
      const injector = new FaultInjectingHandler(handler, service, { ...faults, onInject: onInject(logger) });
      injectors.push(injector);
      return injector;
    },
  });
  logger.info("faults injected in all", { faults: injectors.map((i) => i.stats()) });
} catch (err) {
  process.stderr.write(`${JSON.stringify({ level: "ERROR", message: "worker crashed", error: (err as Error).message })}\n`);
  process.exitCode = 1;
}
