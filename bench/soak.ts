/**
 * `npm run soak`: the chaos scenario of the reliability suite (bench/chaos.ts), long: a job of
 * 10,000 chunks through the emulated cloud with seeded faults in every S3/SQS call, workers
 * SIGKILLed, duplicated and delayed tasks, endpoint outages and concurrent reducers, sampling
 * the memory (VmRSS) of the workers and of this process (emulator, splitter, reducer) as it
 * goes. Prints what it injected and what it verified; exits 1 unless every run was exact.
 *
 * Env (all optional): SOAK_CHUNKS (10000), SOAK_CHUNK_SIZE (1024), SOAK_WORKERS (3),
 * SOAK_CONCURRENCY (2), SOAK_FAULT_RATE (0.05), SOAK_KILLS (10), SOAK_OUTAGES (2),
 * SOAK_DUPLICATES (0.05, a fraction of chunks), SOAK_SEED (42), SOAK_RUNS (1),
 * SOAK_MAX_ATTEMPTS (4), SOAK_TIMEOUT_MINUTES (120), SOAK_VERBOSE (0).
 */
import os from "node:os";
import { describeReport, runChaos, type ChaosReport } from "./chaos.js";

const num = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}: expected a number ≥ 0, got ${JSON.stringify(raw)}`);
  return n;
};

const settings = {
  chunks: num("SOAK_CHUNKS", 10_000),
  chunkSize: num("SOAK_CHUNK_SIZE", 1024),
  workers: num("SOAK_WORKERS", 3),
  workerConcurrency: num("SOAK_CONCURRENCY", 2),
  faultRate: num("SOAK_FAULT_RATE", 0.05),
  kills: num("SOAK_KILLS", 10),
  outages: num("SOAK_OUTAGES", 2),
  duplicateFraction: num("SOAK_DUPLICATES", 0.05),
  seed: num("SOAK_SEED", 42),
  runs: num("SOAK_RUNS", 1),
  maxAttempts: num("SOAK_MAX_ATTEMPTS", 4),
  timeoutMinutes: num("SOAK_TIMEOUT_MINUTES", 120),
  verbose: num("SOAK_VERBOSE", 0) > 0,
};

const started = Date.now();
const stamp = (): string => `[${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s]`;
const say = (line: string): void => void process.stdout.write(`${stamp()} ${line}\n`);

say(`cloudmill soak: ${JSON.stringify(settings)}`);
say(
  `machine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, load ${os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(" ")}; node ${process.version}`,
);

const reports: ChaosReport[] = [];
for (let run = 0; run < settings.runs; run++) {
  const seed = settings.seed + run;
  say(`run ${run + 1}/${settings.runs} (seed ${seed})`);
  const report = await runChaos({
    seed,
    chunks: settings.chunks,
    chunkSize: settings.chunkSize,
    workers: settings.workers,
    workerConcurrency: settings.workerConcurrency,
    faultRate: settings.faultRate,
    kills: settings.kills,
    duplicateFraction: settings.duplicateFraction,
    outages: settings.outages,
    outageMs: 3000,
    rogueReducers: 2,
    rogueEveryMs: 3000,
    maxAttempts: settings.maxAttempts,
    visibilitySeconds: 10,
    deadlineSeconds: Math.max(3600, settings.timeoutMinutes * 60),
    timeoutMs: settings.timeoutMinutes * 60_000,
    rssEveryMs: 2000,
    keepLines: false,
    verbose: settings.verbose,
    report: (line) => say(`  ${line}`),
  });
  reports.push(report);
  for (const line of describeReport(report)) say(`  ${line}`);
}

const sum = (f: (r: ChaosReport) => number): number => reports.reduce((s, r) => s + f(r), 0);
const exact = reports.filter((r) => r.verified.exact && r.verified.lost === 0 && r.verified.unexpectedWorkerExits === 0).length;
const workerPeaks = reports.flatMap((r) => Object.values(r.rss?.workers ?? {}));
const summary = [
  `runs: ${reports.length}, exact: ${exact}, failed or wrong: ${reports.length - exact}`,
  `faults injected: ${sum((r) => r.injected.workerFaults + r.injected.roleFaults)} (workers ${sum((r) => r.injected.workerFaults)}, roles ${sum((r) => r.injected.roleFaults)})`,
  `kills: ${sum((r) => r.injected.kills)}; worker processes that exited unkilled: ${sum((r) => r.verified.unexpectedWorkerExits)}; duplicated tasks: ${sum((r) => r.injected.duplicates)}; endpoint outages: ${sum((r) => r.injected.outages)}; concurrent reduce calls: ${sum((r) => r.injected.rogueReduceCalls)}`,
  `chunks processed: ${sum((r) => r.verified.parts)} of ${sum((r) => r.chunks)}; lost: ${sum((r) => r.verified.lost)}; duplicate parts: ${sum((r) => r.verified.duplicateParts)}; misplaced parts: ${sum((r) => r.verified.misplacedParts)}`,
  `worker RSS (MiB) over ${workerPeaks.length} worker processes: first sample ${range(workerPeaks.map((s) => s.startKiB))}, at 1/4 of each life ${range(workerPeaks.map((s) => s.quarterKiB))}, last sample ${range(workerPeaks.map((s) => s.endKiB))}, peak ${mib(Math.max(...workerPeaks.map((s) => s.peakKiB)))}`,
  ...reports.map(
    (r) =>
      `host RSS (MiB), ${r.jobId}: start ${mib(r.rss!.host.startKiB)}, at 1/4 ${mib(r.rss!.host.quarterKiB)}, at 1/2 ${mib(r.rss!.host.halfKiB)}, end ${mib(r.rss!.host.endKiB)}, peak ${mib(r.rss!.host.peakKiB)}; heap used start ${mib(r.rss!.hostHeapUsed.startKiB)}, at 1/2 ${mib(r.rss!.hostHeapUsed.halfKiB)}, end ${mib(r.rss!.hostHeapUsed.endKiB)}, peak ${mib(r.rss!.hostHeapUsed.peakKiB)}`,
  ),
  `wall time: ${((Date.now() - started) / 60_000).toFixed(1)} min`,
];
say("summary");
for (const line of summary) say(`  ${line}`);
process.exitCode = exact === reports.length ? 0 : 1;

function range(kibs: readonly number[]): string {
  return `${mib(Math.min(...kibs))}–${mib(Math.max(...kibs))}`;
}

function mib(kib: number): string {
  return Number.isFinite(kib) ? (kib / 1024).toFixed(0) : "?";
}
