/** Names and defaults of the SDK. */

/** Local files are uploaded to the input bucket under `_uploads/<jobId>/` (keys starting with `_` never trigger a job). */
export { UPLOADS_PREFIX } from "../core/keys.js";

/** How result() polls status.json: one GET per poll, backing off from initial to max. */
export const POLL_DEFAULTS = {
  initialMs: 250,
  maxMs: 5_000,
  factor: 1.5,
} as const;

/** Multipart part size for uploads: ≥ 5 MiB (S3's minimum), ≤ 10 MiB (the emulator's body limit). */
export const UPLOAD_PART_BYTES = 8 * 1024 * 1024;
/** Parts of one file uploaded at once. */
export const UPLOAD_CONCURRENCY = 4;
/**
 * Files one client uploads at once, over all its submissions: `map()` over thousands of local
 * files starts every future at once, and each small file is read whole before its PUT.
 */
export const FILES_AT_ONCE = 4;
/** How long one request may go without a byte of answer before its try fails (the SDK tries 3 times). */
export const REQUEST_TIMEOUT_MS = 20_000;
/**
 * Status reads `jobs()` makes at once. Each holds a listener on the caller's signal while it
 * runs: past 10 on one signal, Node prints a MaxListenersExceededWarning.
 */
export const STATUS_READS_AT_ONCE = 8;
/** Recent jobs `jobs()` returns by default. */
export const DEFAULT_JOBS_LIMIT = 20;
