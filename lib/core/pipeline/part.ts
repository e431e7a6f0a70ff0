/** A part: one chunk's partial result, as a map task writes it and the reducer reads it. */
import { z } from "zod";

export const Part = z.object({
  v: z.literal(1),
  jobId: z.string(),
  index: z.number().int().nonnegative(),
  partial: z.unknown(),
  /** Bad records skipped (onBadRecord: skip). */
  skipped: z.number().int().nonnegative(),
});

export type Part = z.infer<typeof Part>;
