/** How a chunk's reader treats a record too long to read: as a bad record, failed or skipped as the job says. */
import type { TaskJob } from "../job/manifest.js";
import type { MapContext } from "../ops/types.js";
import { oversizedRecord, type RecordLimits } from "../records/alignedBlocks.js";

export const recordLimitsOf = (ctx: MapContext, job: Pick<TaskJob, "maxRecordBytes">): RecordLimits => ({
  ...(job.maxRecordBytes !== undefined ? { maxRecordBytes: job.maxRecordBytes } : {}),
  onOversized: (offset, max) => ctx.bad(oversizedRecord(offset, max)),
});
