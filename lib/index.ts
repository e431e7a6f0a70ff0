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
export { defineOp, type OpDefinition, type RecordMeta, type UserOp } from "./ops/defineOp.js";
export { runLocal, type LocalRunOptions, type LocalRunResult, type Progress } from "./engine/localEngine.js";
export { OpRegistry } from "./ops/registry.js";
export { parseJobSpec, type JobSpec, type JobSpecInput, type Format, type OnBadRecord, type ParamValue } from "./job/spec.js";
export { CloudmillError, ErrorCode, type ErrorContext } from "./errors.js";
export { jsonLogger, silentLogger, type Logger } from "./log.js";
export type { StatsResult } from "./ops/stats.js";
export type { WordcountResult } from "./ops/wordcount.js";
export type { HistogramResult } from "./ops/histogram.js";
export type { GrepResult, GrepSample } from "./ops/grep.js";
export { VERSION } from "./version.js";
