/** `count`: records in the input. For lines, every line is a record, empty ones too. */
import { countLines } from "../records/lines.js";
import type { Op } from "./types.js";
import { parseOpParams } from "./params.js";
import { countRecords, formatParams, formatParamsHelp, type FormatOptions } from "./formatReaders.js";

type CountPartial = { records: number };

export const count: Op<FormatOptions, CountPartial, { records: number }> = {
  name: "count",
  orderFreeMerge: true,
  description: "counts records (lines; for csv rows after the header; for numbers and jsonl non-blank lines)",
  formats: ["lines", "numbers", "csv", "jsonl"],
  paramsHelp: formatParamsHelp,
  parseParams: (raw) => parseOpParams("count", formatParams(), raw),
  mapper(params, ctx) {
    let records = 0;
    return {
      block(block) {
        records += ctx.format === "lines" ? countLines(block.bytes) : countRecords(block, ctx.format, params, ctx);
      },
      finish: () => ({ records }),
    };
  },
  merger() {
    let records = 0;
    return { add: (p) => void (records += p.records), value: () => ({ records }) };
  },
  finalize: (p) => ({ records: p.records }),
};
