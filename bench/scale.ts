/**
 * The 1 TB study (docs/scale.md): what a job of 1 TB in 16 MiB chunks asks of AWS, from the
 * code's own constants (the planner, the partition default, queue and part limits), and a
 * simulation of the one step that holds the whole job in one place: the reducer choosing a
 * sort's splitters and writing its plans from every chunk's samples, timed and measured here.
 */
import { pathToFileURL } from "node:url";
import { DEFAULTS, MiB } from "../lib/core/constants.js";
import { planChunks } from "../lib/core/job/planner.js";
import { defaultPartitions } from "../lib/core/job/spec.js";
import { sortPlanner } from "../lib/core/pipeline/sortStage.js";
import { sort } from "../lib/core/ops/sort.js";
import type { SortSamples } from "../lib/core/shuffle/sortSamples.js";
import { prng } from "../lib/dev/prng.js";
import { PRICES as TABLE, putRequestsOf, vcpuSecondUsd } from "../lib/core/report/prices.js";
import type { SortRef } from "../lib/core/shuffle/shuffleRun.js";

/** List prices: the shipped table's (lib/core/report/prices.ts), as reports and estimates price jobs. */
const INSTANCE = "m7g.large";
export const PRICES = {
  date: TABLE.asOf,
  s3PutPer1000: TABLE.s3Put1000,
  s3GetPer1000: TABLE.s3Get1000,
  s3GbMonth: 0.023,
  sqsPerMillion: TABLE.sqsMillion,
  /** m7g.large, the stack's default instance type: 2 vCPUs, 8 GiB, up to 12.5 Gbit/s (0.937 baseline). */
  m7gLargeHour: vcpuSecondUsd(INSTANCE, "on-demand")! * 3600 * 2,
  m7gLargeSpotHour: vcpuSecondUsd(INSTANCE, "spot")! * 3600 * 2,
  m7gLargeBaselineMBps: 117,
} as const;

const fmt = (n: number): string => (n >= 100 || Number.isInteger(n) ? Math.round(n).toLocaleString("en") : n.toFixed(n >= 10 ? 1 : 2));

export interface SortStudy {
  readonly bytes: number;
  readonly chunks: number;
  readonly partitions: number;
  /** CPU seconds per MiB of input for both stages of a sort, as measured by bench/sort.ts on this machine. */
  readonly cpuSecondsPerMiB: number;
  readonly instances: number;
}

/** Requests, messages, bytes and dollars of a 1 TB sort, stage by stage. */
export const sortStudy = (s: SortStudy): string[] => {
  const M = s.chunks;
  const R = s.partitions;
  const chunk = s.bytes / M;
  const partition = s.bytes / R;
  // PUT requests of one object: as reports and estimates count them (one, or a multipart upload's).
  const putsOf = putRequestsOf;
  // Map task: a HEAD of its part (a keyed task looks for it), a ranged GET and its look-behind, the run and the part.
  const map = { get: 3 * M, put: (putsOf(chunk) + 1) * M, sqs: 2 * M };
  // Reducer: a batch of ≤ 100 part events per call, each listing every part (1,000 per page).
  const calls = Math.ceil((M + R) / 100);
  const reducer = { list: calls * Math.ceil((M + R) / 1000), get: calls * 6 + M + R, put: calls + R + 2, sqs: Math.ceil(R / 10) + calls };
  // Reduce task: its plan, one ranged GET per run, merge passes through scratch (S3 on the fleet), its part.
  const passes = Math.max(0, Math.ceil(Math.log(M) / Math.log(64)) - 1);
  // Pass k writes ceil(M / 64^k) runs of the partition's bytes between them, each read back once by the next.
  let spillPuts = 0;
  let spillGets = 0;
  for (let k = 1; k <= passes; k++) {
    const runs = Math.ceil(M / 64 ** k);
    spillPuts += runs * putsOf(partition / runs);
    spillGets += runs;
  }
  const reduce = {
    get: R * (4 + M + spillGets),
    put: R * (putsOf(partition) + 2 + spillPuts),
    sqs: 2 * R,
  };
  const splitter = { sqs: Math.ceil(M / 10), put: 3, get: 2 };
  const gets = map.get + reducer.get + reduce.get + splitter.get;
  const puts = map.put + reducer.put + reduce.put + splitter.put + reducer.list;
  const sqs = map.sqs + reducer.sqs + reduce.sqs + splitter.sqs + M; // + the part events S3 sends
  const moved = s.bytes * (3 + 2 * passes) + s.bytes; // input, run write, run read, spill write+read per pass, output
  const cpuHours = (s.cpuSecondsPerMiB * (s.bytes / MiB)) / 3600;
  const vcpus = s.instances * 2;
  const mapWall = (s.cpuSecondsPerMiB * 0.5 * (s.bytes / MiB)) / vcpus;
  // A reduce task's bytes through one instance's baseline network, shared by its two task slots.
  const reduceTaskBytes = partition * (2 + 2 * passes);
  const reduceWall = (reduceTaskBytes / 1e6 / (PRICES.m7gLargeBaselineMBps / 2)) * Math.ceil(R / vcpus);
  const hours = (mapWall + reduceWall) / 3600;
  const instance = s.instances * hours * PRICES.m7gLargeHour;
  const spot = s.instances * hours * PRICES.m7gLargeSpotHour;
  const requests = (puts / 1000) * PRICES.s3PutPer1000 + (gets / 1000) * PRICES.s3GetPer1000;
  const storage = ((s.bytes * (2 + (passes > 0 ? 1 : 0))) / 1e9) * PRICES.s3GbMonth * (hours / 730);
  const spillBytes = passes * s.bytes;
  const queue = (sqs / 1e6) * PRICES.sqsPerMillion;
  const tb = s.bytes / 1e12;
  return [
    `${fmt(s.bytes / 1e12)} TB in ${fmt(M)} chunks of ${fmt(chunk / MiB)} MiB, ${R} partitions of ${fmt(partition / 1e9)} GB (the default), ` +
      `${s.instances} m7g.large (${vcpus} vCPUs); merge passes through scratch per reduce task: ${passes} ` +
      `(${fmt(spillBytes / 1e12)} TB spilled)`,
    "",
    "| | S3 GET/HEAD | S3 PUT/LIST | SQS requests |",
    "|---|---|---|---|",
    `| splitter | ${fmt(splitter.get)} | ${fmt(splitter.put)} | ${fmt(splitter.sqs)} |`,
    `| map tasks | ${fmt(map.get)} | ${fmt(map.put)} | ${fmt(map.sqs)} |`,
    `| reducer (Lambda, ${fmt(calls)} calls) | ${fmt(reducer.get)} | ${fmt(reducer.put + reducer.list)} | ${fmt(reducer.sqs)} |`,
    `| reduce tasks | ${fmt(reduce.get)} | ${fmt(reduce.put)} | ${fmt(reduce.sqs)} |`,
    `| total | ${fmt(gets)} | ${fmt(puts)} | ${fmt(sqs)} (with ${fmt(M)} part events) |`,
    "",
    `Bytes moved between S3 and the fleet: ${fmt(moved / 1e12)} TB. CPU: ${fmt(cpuHours)} vCPU-hours at ${s.cpuSecondsPerMiB.toFixed(3)} s/MiB.`,
    `Wall: map stage ${fmt(mapWall / 60)} min, reduce stage ${fmt(reduceWall / 60)} min (a reduce task moves ${fmt(reduceTaskBytes / 1e9)} GB ` +
      `through half of a ${PRICES.m7gLargeBaselineMBps} MB/s baseline NIC).`,
    "",
    `| dollars per TB (prices of ${PRICES.date}) | on-demand | spot |`,
    "|---|---|---|",
    `| instances | ${(instance / tb).toFixed(2)} | ${(spot / tb).toFixed(2)} |`,
    `| S3 requests | ${(requests / tb).toFixed(2)} | ${(requests / tb).toFixed(2)} |`,
    `| S3 storage while it runs | ${(storage / tb).toFixed(2)} | ${(storage / tb).toFixed(2)} |`,
    `| SQS | ${(queue / tb).toFixed(2)} | ${(queue / tb).toFixed(2)} |`,
    `| total | ${((instance + requests + storage + queue) / tb).toFixed(2)} | ${((spot + requests + storage + queue) / tb).toFixed(2)} |`,
  ];
};

/**
 * The reducer's step at the stage boundary, simulated at full size as the reducer takes it:
 * every chunk's part (256 samples, as map tasks keep them) parsed from its JSON and packed into
 * the sort's samples, splitters chosen, and every partition's plan cut and serialized in turn.
 */
export const simulateSortPlans = (chunks: number, partitions: number): string[] => {
  const next = prng(5);
  // With --expose-gc, heap figures count what is held, not garbage not yet collected.
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
  gc();
  const started = performance.now();
  const { heapUsed: heapBefore, arrayBuffers: buffersBefore } = process.memoryUsage();
  const merger = sort.merger({});
  let partsBytes = 0;
  for (let c = 0; c < chunks; c++) {
    const values = Array.from({ length: 256 }, () => (next() - 0.5) * 1e6).sort((a, b) => a - b);
    const ref: SortRef = {
      key: `_work/job/shuffle/${String(c).padStart(7, "0")}-0.jsonl`,
      bytes: 16 * MiB,
      lines: 1_800_000,
      step: 7032,
      samples: values.map((v, i) => [[1, v, String(v)], i * 65_536]),
    };
    const json = JSON.stringify(ref);
    partsBytes += json.length;
    merger.add(JSON.parse(json));
  }
  const samples = merger.value() as SortSamples;
  gc();
  const heapMB = (process.memoryUsage().heapUsed - heapBefore) / MiB;
  const buffersMB = (process.memoryUsage().arrayBuffers - buffersBefore) / MiB;
  const planOf = sortPlanner(samples, partitions);
  let planBytes = 0;
  for (let p = 0; p < partitions; p++) planBytes += JSON.stringify(planOf(p)).length;
  return [
    `${fmt(chunks)} chunks × 256 samples, ${partitions} partitions: parts to read ${fmt(partsBytes / MiB)} MiB of JSON, plans ${fmt(planBytes / MiB)} MiB, ` +
      `packed samples ${fmt(heapMB)} MiB of heap and ${fmt(buffersMB)} MiB of typed arrays, ${fmt((performance.now() - started) / 1000)} s on this machine ` +
      "(the reducer Lambda has 1,024 MB).",
  ];
};

export const scaleStudy = (cpuSecondsPerMiB: number): string[] => {
  const bytes = 1e12;
  const chunks = planChunks([{ bucket: "b", key: "k", size: bytes, etag: "e", name: "k" }], DEFAULTS.chunkSize).total;
  const partitions = defaultPartitions(bytes, chunks);
  return [
    ...sortStudy({ bytes, chunks, partitions, cpuSecondsPerMiB, instances: 100 }),
    "",
    "Simulated: the reducer's stage boundary of that sort (splitters and plans from every run's samples):",
    ...simulateSortPlans(chunks, partitions),
  ];
};

// `node --expose-gc --max-old-space-size=1024 dist/bench/scale.js <cpu s/MiB>`: the simulation holds a 1 TB job's samples in a reducer's heap.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${scaleStudy(Number(process.argv[2] ?? 0.36)).join("\n")}\n`);
}
