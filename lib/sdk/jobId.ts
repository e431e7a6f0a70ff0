/**
 * Job ids the SDK gives: unique per submit, sortable by time: `job-20261121T233633-9f1c02ab5e7d4c21`.
 * 64 random bits: `map()` names tens of thousands of jobs in one second, and two jobs of one id
 * would both be answered with whichever spec the splitter took (32 bits collided once in four
 * maps of 50,000).
 */
import { randomBytes } from "node:crypto";

export const newJobId = (now: Date = new Date()): string => {
  const t = now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "");
  return `job-${t}-${randomBytes(8).toString("hex")}`;
};
