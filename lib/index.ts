/**
 * cloudmill's package root: the SDK (`Cloudmill`, futures and helpers), user ops
 * (`defineOp`), the embedded engine (`runLocal`), errors and types. Re-exports only.
 *
 * ```ts
 * import { Cloudmill, waitAll } from "cloudmill";
 * const mill = new Cloudmill({ stack: "Cloudmill-mylab" });
 * console.log(await waitAll(mill.map("wordcount", ["a.txt", "b.txt", "s3://lab-data/c.txt"])));
 * ```
 */
export * from "./sdk/index.js";
export { defineOp, type OpDefinition, type RecordMeta, type UserOp } from "./core/ops/defineOp.js";
export { runLocal, type LocalRunOptions, type LocalRunResult, type Progress } from "./local/localEngine.js";
export { OpRegistry } from "./core/ops/registry.js";
export { parseJobSpec, type JobSpec, type JobSpecInput, type Format, type OnBadRecord, type ParamValue } from "./core/job/spec.js";
export { CloudmillError, ErrorCode, type ErrorContext } from "./core/errors.js";
export { jsonLogger, silentLogger, type Logger } from "./core/log.js";
export type { StatsResult } from "./core/ops/stats.js";
export type { WordcountResult } from "./core/ops/wordcount.js";
export type { HistogramResult } from "./core/ops/histogram.js";
export type { GrepResult, GrepSample } from "./core/ops/grep.js";
export { VERSION } from "./core/version.js";
