/**
 * Tests only: a splitter invocation that dies (its function timed out) once it has written a
 * number of parts. Nothing of a stopped function runs on, so every S3, SQS and ECS call it
 * makes after that fails. Handed in by the dev cloud for its first invocation per upload.
 */
import { CloudmillError, ErrorCode } from "../core/errors.js";
import { parsePartKey } from "../core/keys.js";
import type { SplitDeps } from "../core/pipeline/deps.js";
import type { BlobStore, TaskQueue } from "../core/ports.js";
import type { Preference } from "../core/job/spec.js";

export const dyingAfterParts = (deps: SplitDeps, parts: number): SplitDeps => {
  let written = 0;
  let dead = false;
  const died = (): CloudmillError => new CloudmillError(ErrorCode.ENVIRONMENT, "the splitter's function timed out (simulated)");
  const alive = <T>(fn: () => Promise<T>): Promise<T> => (dead ? Promise.reject(died()) : fn());
  const store = (s: BlobStore): BlobStore => ({
    name: s.name,
    head: (key) => alive(() => s.head(key)),
    get: (key, options) => alive(() => s.get(key, options)),
    put: async (key, body, options) => {
      await alive(() => s.put(key, body, options));
      if (parsePartKey(key) && ++written >= parts) dead = true;
    },
    list: (prefix, options) =>
      (async function* () {
        if (dead) throw died();
        yield* s.list(prefix, options);
      })(),
    delete: (key) => alive(() => s.delete(key)),
  });
  const dying = (q: TaskQueue): TaskQueue => ({
    sendBatch: (bodies, options) => alive(() => q.sendBatch(bodies, options)),
    receive: (options) => alive(() => q.receive(options)),
    delete: (handle) => alive(() => q.delete(handle)),
    changeVisibility: (handle, seconds) => alive(() => q.changeVisibility(handle, seconds)),
    depth: () => alive(() => q.depth()),
  });
  const { fleet, spotQueue } = deps;
  return {
    ...deps,
    output: store(deps.output),
    inputStore: (bucket) => store(deps.inputStore(bucket)),
    queue: dying(deps.queue),
    ...(spotQueue ? { spotQueue: dying(spotQueue) } : {}),
    ...(fleet ? { fleet: { wake: (tasks: number, prefer?: Preference) => alive(() => fleet.wake(tasks, prefer)) } } : {}),
  };
};
