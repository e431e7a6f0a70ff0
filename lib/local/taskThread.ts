/** A worker thread of the local engine: runs tasks sent by the main thread, one at a time. */
import { enableLinearRegExp } from "../sandbox/linearRegExp.js";
import { parentPort, workerData } from "node:worker_threads";
import { FsBlobStore } from "../fs/FsBlobStore.js";
import { toCloudmillError } from "../core/errors.js";
import { threadLogger } from "../core/log.js";
import { OpRegistry } from "../core/ops/registry.js";
import { loadOpsModule } from "../core/ops/opModules.js";
import { runTask } from "../core/pipeline/task.js";
import { ThreadItemRunner } from "../sandbox/ThreadItemRunner.js";
import { isExitRequest } from "../sandbox/threadExit.js";
import { Accumulators, withoutPartial } from "./accumulate.js";
import { itemsScratchRoot } from "./itemScratch.js";
import type { ThreadData, ThreadReady, ThreadReply, ThreadRequest } from "./executor.js";

enableLinearRegExp();
const data = workerData as ThreadData;
const registry = new OpRegistry();
const ready = (async () => {
  for (const m of data.opsModules) await loadOpsModule(m, registry);
})();
// The engine starts a task's clock once its thread is ready (a module that fails to load is told by the task).
void ready.then(
  () => parentPort!.postMessage({ ready: true } satisfies ThreadReady),
  () => parentPort!.postMessage({ ready: true } satisfies ThreadReady),
);
const root = new FsBlobStore("/");
const items = new ThreadItemRunner({ opsModules: data.opsModules, scratchRoot: itemsScratchRoot });
const log = threadLogger(data.log, (line) => process.stderr.write(line));
const deps = {
  output: new FsBlobStore(data.outputRoot, data.outputLabel === undefined ? {} : { label: data.outputLabel }),
  inputStore: () => root,
  registry,
  log,
  items,
};
const accumulators = new Accumulators(registry);

const handle = async (request: Exclude<ThreadRequest, { kind: "exit" }>): Promise<ThreadReply> => {
  if (request.kind === "collect") {
    const apart = accumulators.absorb(request.jobId, request.absorb);
    const own = accumulators.take(request.jobId);
    return { ok: true, collected: own ? [own, ...apart] : apart };
  }
  await ready;
  const outcome = await runTask(deps, request.task, { writePart: request.writePart, checkOpDigest: false });
  if (request.accumulate) accumulators.add(request.task, outcome);
  // The partial stays here: it is merged above (and in its part, if one was written).
  return { ok: true, outcome: withoutPartial(outcome) };
};

parentPort!.on("message", (request: ThreadRequest) => {
  // Its item threads first: exiting ends them as terminate() would, whatever they are doing.
  if (isExitRequest(request)) return void items.close().finally(() => process.exit(0));
  void (async () => {
    let reply: ThreadReply;
    try {
      reply = await handle(request);
    } catch (err) {
      reply = { ok: false, error: toCloudmillError(err).toJSON() };
    }
    parentPort!.postMessage(reply);
  })();
});
