/** A job started the way the splitter starts one, over one object of a test's input store. */
import type { InputObject } from "../../lib/core/job/manifest.js";
import { parseJobSpec, type JobSpecInput } from "../../lib/core/job/spec.js";
import type { SplitDeps } from "../../lib/core/pipeline/deps.js";
import { startJob, taskJobOf } from "../../lib/core/pipeline/split.js";
import type { BlobStore } from "../../lib/core/ports.js";

export const OUTPUT = { result: "out/result.json", status: "out/status.json" };

/** Writes `bytes` as object `data` of `inputs` and starts job `jobId` over it with `spec`, in chunks of `chunkSize`. */
export const startJobOver = async (
  deps: SplitDeps,
  inputs: BlobStore,
  bytes: Buffer,
  jobId: string,
  spec: Omit<JobSpecInput, "inputs">,
  chunkSize: number,
) => {
  await inputs.put("data", bytes);
  const info = (await inputs.head("data"))!;
  const object: InputObject = { bucket: "in", key: "data", size: info.size, etag: info.etag, name: "data" };
  return startJob(deps, {
    jobId,
    job: taskJobOf(parseJobSpec({ ...spec, inputs: ["data"] }), deps.registry),
    ...(spec.fanIn !== undefined ? { fanIn: spec.fanIn } : {}),
    inputs: [object],
    chunkSize,
    output: OUTPUT,
    trigger: "test",
    deadlineSeconds: 3600,
  });
};
