/**
 * cloudmill's package root, light on purpose: it loads no AWS client. User ops (`defineOp`),
 * the embedded engine (`runLocal`), the op registry, job specs, errors and result types.
 * The SDK is `cloudmill/sdk`; the CDK construct is `cloudmill/cdk`.
 *
 * ```ts
 * import { defineOp } from "cloudmill";
 * export const longest = defineOp({ name: "longest-line", format: "lines", map: (l: string) => l.length, combine: Math.max });
 * ```
 */
export {
  defineOp,
  type BlobStream,
  type CombiningOpDefinition,
  type KeyedOpDefinition,
  type OpDefinition,
  type RecordMeta,
  type ReducingOpDefinition,
  type StreamingOpDefinition,
  type UserKeyedOp,
  type UserOp,
} from "./core/ops/defineOp.js";
export {
  defineTask,
  type TaskContext,
  type TaskDefinition,
  type TaskResult,
  type ItemError,
  type OnItemError,
} from "./core/ops/defineTask.js";
export { runLocal, type LocalRunOptions, type LocalRunResult, type Progress } from "./local/localEngine.js";
export { OpRegistry } from "./core/ops/registry.js";
export { loadOpsModule } from "./core/ops/opModules.js";
export { parseJobSpec, type JobSpec, type JobSpecInput, type Format, type OnBadRecord, type ParamValue } from "./core/job/spec.js";
export { CloudmillError, ErrorCode, type ErrorContext } from "./core/errors.js";
export { jsonLogger, silentLogger, type Logger } from "./core/log.js";
export type { StatsResult } from "./core/ops/stats.js";
export type { WordcountResult } from "./core/ops/wordcount.js";
export type { HistogramResult } from "./core/ops/histogram.js";
export type { GrepResult, GrepSample } from "./core/ops/grep.js";
export { VERSION } from "./core/version.js";
