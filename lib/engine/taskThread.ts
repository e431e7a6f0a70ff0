/** A worker thread of the local engine: runs tasks sent by the main thread, one at a time. */
import { parentPort, workerData } from "node:worker_threads";
import { FsBlobStore } from "../adapters/FsBlobStore.js";
import { toCloudmillError } from "../errors.js";
import type { TaskMessage } from "../job/manifest.js";
import { silentLogger } from "../log.js";
import { loadOpsModule, OpRegistry } from "../ops/registry.js";
import { runTask } from "../pipeline/task.js";
import type { ThreadData, ThreadReply } from "./executor.js";

const data = workerData as ThreadData;
const registry = new OpRegistry();
const ready = (async () => {
  for (const m of data.opsModules) await loadOpsModule(m, registry);
})();
const root = new FsBlobStore("/");
const deps = { output: new FsBlobStore(data.outputRoot), inputStore: () => root, registry, log: silentLogger };

parentPort!.on("message", (task: TaskMessage) => {
  void (async () => {
    let reply: ThreadReply;
    try {
      await ready;
      reply = { ok: true, outcome: await runTask(deps, task) };
    } catch (err) {
      reply = { ok: false, error: toCloudmillError(err).toJSON() };
    }
    parentPort!.postMessage(reply);
  })();
});
