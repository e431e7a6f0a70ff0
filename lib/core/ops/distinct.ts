/**
 * `distinct`: every distinct key and how many records have it, all of them (not a top k): a
 * line of text, or one or more CSV columns / JSONL fields. One JSON line per key in the job's parts.
 */
import * as z from "zod";
import { badRecord, CloudmillError, ErrorCode } from "../errors.js";
import { forEachLine, previewText } from "../records/lines.js";
import { forEachRecord, formatParamsHelp, formatParamsShape, type FormatOptions } from "./formatReaders.js";
import { keyedOp } from "./keyedOp.js";
import { lazySchema, paramHint, parseOpParams, stringParam } from "./params.js";
import { fieldList, fieldReader, keyOfFields, keyValue } from "./recordFields.js";

export interface DistinctParams extends FormatOptions {
  readonly key?: string | undefined;
}

const REPLACEMENT = "\uFFFD";

const DistinctParamsSchema = lazySchema(() => z.strictObject({ ...formatParamsShape, key: stringParam(1000).optional() }));

export const distinct = keyedOp<DistinctParams>({
  name: "distinct",
  description: "every distinct line (or csv/jsonl key) with its count, all of them; one JSON line per key",
  formats: ["lines", "csv", "jsonl"],
  paramsHelp: [...formatParamsHelp, "key=COL[,COL]       csv/jsonl: the column(s) or field(s) that make the key (lines: the line)"],
  parseParams: (raw) => parseOpParams("distinct", DistinctParamsSchema(), raw),
  pairs(params, ctx, fields) {
    if (ctx.format === "lines") {
      // A line is its own key: a key= would otherwise be read as a field of each key at the end.
      if (params.key !== undefined)
        throw new CloudmillError(ErrorCode.INVALID_SPEC, "distinct of lines: key= names csv or jsonl fields; a line is its own key", {
          field: "params.key",
        });
      return (block, emit) =>
        forEachLine(block, (s, e, offset) => {
          const text = block.bytes.toString("utf8", s, e);
          // Two lines whose bytes differ must not meet as one key: bytes that are not UTF-8 are refused.
          if (text.includes(REPLACEMENT) && !Buffer.from(text, "utf8").equals(block.bytes.subarray(s, e)))
            return ctx.bad(badRecord(`line is not valid UTF-8: ${JSON.stringify(previewText(block.bytes, s, e))}`, offset));
          emit(text, 1);
        });
    }
    if (params.key === undefined)
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        `distinct of ${ctx.format} records needs param key, one or more columns or fields: ${paramHint("key", "COL[,COL]")}`,
        { field: "params.key" },
      );
    const keysOf = keyOfFields(fieldList(params.key).map((name) => fieldReader(name, "key", ctx.format, ctx, fields)));
    return (block, emit) => {
      const keyOf = keysOf(block);
      forEachRecord(block, ctx.format, params, ctx, (record, offset, text, start, end) => emit(keyOf(record, offset, text, start, end), 1));
    };
  },
  combine: (a, b) => (a as number) + (b as number),
  row: (key, value, params) => ({ key: params.key === undefined ? key : keyValue(key), count: value as number }),
});
