/**
 * One measurement in a fresh process (so peak RSS belongs to it alone):
 *   node dist/bench/measure.js <engine|baseline|naive> <op> <file> [workers] [chunkSize]
 * Prints one JSON line: { ms, maxRssMB, result }.
 */
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { runLocal } from "../lib/local/localEngine.js";
import { parseJobSpec } from "../lib/core/job/spec.js";
import { OpRegistry } from "../lib/core/ops/registry.js";
import { type MapContext, namesContext } from "../lib/core/ops/types.js";

const [mode, opName, file, workersArg, chunkSizeArg] = process.argv.slice(2) as [string, string, string, string?, string?];
const registry = new OpRegistry();

/** Single-process streaming with the very same op code: one pass, no chunks, no threads. */
const baseline = async (): Promise<unknown> => {
  const op = registry.get(opName);
  const params = op.parseParams({});
  const ctx: MapContext = {
    inputIndex: 0,
    inputName: file,
    format: op.formats[0]!,
    bad: (e) => {
      throw e;
    },
  };
  const mapper = op.mapper(params, ctx);
  let carry: Buffer = Buffer.alloc(0);
  let offset = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    const buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    const nl = buf.lastIndexOf(0x0a);
    if (nl < 0) {
      carry = buf;
      continue;
    }
    mapper.block({ bytes: buf.subarray(0, nl + 1), offset, first: offset === 0 });
    offset += nl + 1;
    carry = buf.subarray(nl + 1);
  }
  if (carry.length) mapper.block({ bytes: carry, offset, first: offset === 0 });
  const merger = op.merger(params);
  merger.add(mapper.finish());
  return op.finalize(merger.value(), params, namesContext([file]));
};

/** What a user would write first: readline, split, a Map. */
const naive = async (): Promise<unknown> => {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  if (opName === "count") {
    let n = 0;
    for await (const _ of lines) n++;
    return { records: n };
  }
  if (opName === "wordcount") {
    const counts = new Map<string, number>();
    let total = 0;
    for await (const line of lines) {
      for (const w of line.split(/[ \t\n\v\f\r]+/)) {
        if (!w) continue;
        total++;
        counts.set(w, (counts.get(w) ?? 0) + 1);
      }
    }
    const top = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 10);
    return { total, distinct: counts.size, top };
  }
  // stats: Welford's running mean and variance.
  let n = 0,
    mean = 0,
    m2 = 0,
    sum = 0,
    min = Infinity,
    max = -Infinity;
  for await (const line of lines) {
    const t = line.trim();
    if (!t) continue;
    const x = Number(t);
    n++;
    sum += x;
    const d = x - mean;
    mean += d / n;
    m2 += d * (x - mean);
    if (x < min) min = x;
    if (x > max) max = x;
  }
  return { count: n, sum, min, max, mean, variance: m2 / n };
};

const engine = async (): Promise<unknown> => {
  const spec = parseJobSpec({ op: opName, inputs: [file], chunkSize: chunkSizeArg ?? "16MiB" });
  const { result } = await runLocal({ spec, registry, workers: Number(workersArg ?? 2) });
  return result;
};

const started = performance.now();
const result = await (mode === "engine" ? engine() : mode === "baseline" ? baseline() : naive());
const ms = performance.now() - started;
process.stdout.write(`${JSON.stringify({ ms, maxRssMB: process.resourceUsage().maxRSS / 1024, result })}\n`);
