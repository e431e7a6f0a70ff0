/** Job ids the SDK gives: unique per submit, sortable by time: `job-20261121T233633-9f1c02ab`. */
import { randomBytes } from "node:crypto";

export const newJobId = (now: Date = new Date()): string => {
  const t = now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "");
  return `job-${t}-${randomBytes(4).toString("hex")}`;
};
