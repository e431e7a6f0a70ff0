/** How a chunk's reader treats a record too long to read: as a bad record, failed or skipped as the job says. */
import type { MapContext } from "../ops/types.js";
import { oversizedRecord, type RecordLimits } from "../records/alignedBlocks.js";

export const recordLimitsOf = (ctx: MapContext): RecordLimits => ({
  onOversized: (offset, max) => ctx.bad(oversizedRecord(offset, max)),
});
