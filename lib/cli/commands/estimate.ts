/**
 * `cloudmill estimate <inputs...> --op X`: what a job would take and cost on the fleet, before
 * anything runs: sizes from the filesystem or the lab's buckets (listed, not read), the op's rate calibrated on a
 * sample of the first input (or its default), priced as job reports are.
 */
import { readFile } from "node:fs/promises";
import { Command } from "commander";
import * as z from "zod";
import { DEFAULTS } from "../../core/constants.js";
import { HiddenFiles, hiddenNotice } from "../../core/hiddenNames.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../../core/errors.js";
import { vcpusOfSize } from "../../core/instanceTypes.js";
import { parseSize } from "../../core/job/size.js";
import { MAX_PARTITIONS } from "../../core/job/spec.js";
import { loadOpsModule } from "../../core/ops/opModules.js";
import { OpRegistry } from "../../core/ops/registry.js";
import { isBuiltinOp } from "../../core/ops/registry.js";
import { estimatedFormat, estimatedPlan, estimateJob, type Estimate } from "../../core/report/estimate.js";
import { PriceOverride, withPrices, type Capacity } from "../../core/report/prices.js";
import { parseJsonWith } from "../../core/parseJson.js";
import { expandLocalManifests, resolveLocalInputs } from "../../local/localInputs.js";
import { isS3Input } from "../../core/pipeline/inputManifests.js";
import { withCodecs } from "../../core/pipeline/inputCodecs.js";
import type { InputObject } from "../../core/job/manifest.js";
import { FsBlobStore } from "../../fs/FsBlobStore.js";
import { calibrate, calibratedRates } from "../../local/calibrate.js";
import { CalibrationCache, calibrationCacheDir } from "../../local/calibrationCache.js";
import { collect, collectParam, numberFlag } from "../options.js";
import { parseFlags, usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import type { CliIO } from "../io.js";

const EstimateFlags = z.object({
  op: z.string(),
  param: z.record(z.string(), z.string()).default({}),
  chunkSize: z.string().optional(),
  partitions: numberFlag("a whole number", { min: 1, max: MAX_PARTITIONS }).optional(),
  workers: numberFlag("a whole number", { min: 1, max: 1000 }).default(1),
  maxWorkers: numberFlag("a whole number", { min: 1, max: 1000 }).default(4),
  instanceType: z.string().default(DEFAULTS.instanceType),
  spot: z.boolean().default(false),
  prices: z.string().optional(),
  inlineMaxBytes: z.string().default("64MiB"),
  calibrate: z.boolean().default(true),
  fresh: z.boolean().default(false),
  ops: z.array(z.string()).default([]),
  json: z.boolean().default(false),
});

/** A lab's price table (`--prices`), checked: one line naming the file and the first bad field. */
const priceFile = async (file: string): Promise<PriceOverride> => {
  const text = await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `--prices ${file}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
  });
  return parseJsonWith(text, PriceOverride, `--prices ${file}`, ErrorCode.INVALID_SPEC);
};

/** The files the inputs name (directories walked), in order, as the job would list them. */
const localInputs = async (inputs: readonly string[], root: FsBlobStore, hidden: HiddenFiles): Promise<InputObject[]> => {
  const s3 = (await expandLocalManifests(inputs)).find(isS3Input);
  if (s3 !== undefined)
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `${s3}: give only s3:// inputs (listed in the lab's buckets) or only local files`);
  return resolveLocalInputs(inputs, root, hidden);
};

const dollars = (x: number): string => `$${x < 0.01 ? x.toFixed(6) : x.toFixed(2)}`;
const duration = (s: number): string =>
  s < 120 ? `${s.toFixed(1)} s` : s < 7200 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;

/** What a fleet's dollars are at: list prices, or the price table's typical spot share of them. */
export const pricedAs = (capacity: Capacity | undefined): string =>
  capacity === "spot" ? "spot, at the price table's typical share of on-demand list prices" : "on-demand list prices";

/** The estimate as a few lines for a person. */
export const estimateText = (e: Estimate, calibratedOn?: { file: string; bytes: number; cachedAt?: string }): string => {
  const c = e.cost;
  const rate = calibratedOn
    ? `calibrated on ${(calibratedOn.bytes / 1e6).toFixed(1)} MB of ${calibratedOn.file}` +
      (calibratedOn.cachedAt ? `, cached ${calibratedOn.cachedAt} (--fresh measures again)` : "")
    : e.rate.source === "calibrated"
      ? "calibrated here on the first chunk of the first input"
      : "the op's default; --no-calibrate, a lab's op, or nothing to sample";
  return [
    `estimate: ${e.op} over ${(e.bytes / 1e6).toFixed(1)} MB in ${e.chunks} chunk(s)`,
    `rate: ${e.rate.mbPerSecondPerVcpu.toFixed(1)} MB/s per vCPU (${rate})` +
      (e.rate.shared !== undefined ? `; ${Math.round(e.rate.shared * 100)} % of it beside another task` : "") +
      (e.rate.coldSeconds ? `; a fresh thread's first chunk ${e.rate.coldSeconds.toFixed(2)} s longer` : ""),
    `runs on: ${e.runsOn === "lambda" ? "the splitter function, where the job starts (under the inline limit)" : `the fleet`}` +
      (e.runsOn === "fleet" ? ` (${c.instanceType})` : ""),
    ...(e.hidden ? [hiddenNotice(e.hidden)] : []),
    ...(e.compressedBytes
      ? [`compressed: ${(e.compressedBytes / 1e6).toFixed(1)} MB of it, priced as stored (its decoded size is known only by reading it)`]
      : []),
    `task time: ${duration(e.taskSeconds)} (${e.workerHours.toFixed(4)} worker-hours)`,
    // At the most workers already: one figure, not the same one twice.
    e.wallSeconds.workers === e.wallSeconds.maxWorkers
      ? `wall time: ${duration(e.wallSeconds.atWorkers)} at ${e.wallSeconds.workers} worker(s) (the most)`
      : `wall time: ${duration(e.wallSeconds.atWorkers)} at ${e.wallSeconds.workers} worker(s), ${duration(e.wallSeconds.atMost)} at ` +
        `${e.wallSeconds.maxWorkers} (the most)`,
    `cost: ${c.fleetPriced ? dollars(c.total) : "unpriced"}: instances ` +
      `${c.fleetPriced ? dollars(c.instances) : `unpriced (the price table has no ${c.capacity} price for ${c.instanceType})`}, ` +
      `Lambda ${dollars(c.lambda)}, S3 requests ${dollars(c.s3Requests)}, SQS ${dollars(c.sqs)}, logs ${dollars(c.logs)} ` +
      `(${pricedAs(c.capacity)} of ${c.pricesAsOf})`,
  ].join("\n");
};

export const estimateCommand = (io: CliIO): Command =>
  withCloudOptions(new Command("estimate"))
    .description("what a job would take and cost on the fleet, from input sizes and a calibration on a sample")
    .argument("<inputs...>", "files or directories, s3:// inputs, or manifest:<list>")
    .requiredOption("--op <name>", "the op")
    .option("-p, --param <name=value>", "an op param, repeatable", collectParam)
    .option("-c, --chunk-size <size>", "bytes per chunk (default 16MiB)")
    .option("--partitions <n>", "keyed ops: how many parts (and reduce tasks); default one per 256MiB of input")
    .option("-w, --workers <n>", "worker tasks to estimate the wall time at", "1")
    .option("--max-workers <n>", "the fleet's most worker tasks (the stack's maxWorkers)", "4")
    .option("--instance-type <type>", "the fleet's instance type, for its price and vCPUs per worker", DEFAULTS.instanceType)
    .option("--spot", "price the instances as the stack's spot fleet buys them (a typical share of on-demand)")
    .option("--prices <file>", "a JSON price table laid over the shipped one: asOf, and any of vcpuHour, spotShare, …")
    .option("--inline-max-bytes <size>", "the stack's inline limit (0: none)", "64MiB")
    .option("--no-calibrate", "use the op's default rate instead of mapping a sample")
    .option("--fresh", "measure the rate again instead of using the one cached for this sample, op and machine")
    .option("--ops <module>", "load user ops from a module, repeatable", collect)
    .option("--json", "print the estimate as JSON")
    .action(async (inputs: string[], raw: Record<string, unknown>) => {
      const flags = parseFlags(EstimateFlags, raw);
      const registry = new OpRegistry();
      for (const m of flags.ops) await loadOpsModule(m, registry);
      registry.get(flags.op);
      const chunkSize = flags.chunkSize ? parseSize(flags.chunkSize) : DEFAULTS.chunkSize;
      const inlineMaxBytes = flags.inlineMaxBytes.trim() === "0" ? 0 : parseSize(flags.inlineMaxBytes);
      if (chunkSize === undefined || chunkSize < 1)
        throw new CloudmillError(ErrorCode.INVALID_SPEC, "--chunk-size: expected a size like 16MiB");
      if (inlineMaxBytes === undefined)
        throw new CloudmillError(ErrorCode.INVALID_SPEC, "--inline-max-bytes: expected a size like 64MiB, or 0");
      const prices = flags.prices === undefined ? undefined : await priceFile(flags.prices);
      const vcpus = vcpusOfSize(flags.instanceType);
      if (vcpus === undefined)
        throw new CloudmillError(ErrorCode.INVALID_SPEC, `--instance-type ${flags.instanceType}: not an instance type`);
      if (inputs.every(isS3Input)) {
        // In the lab's buckets (--stack, or --endpoint for cloudmill dev): listed there, a sample read from the first.
        await usingCloudmill(raw, io, async (mill) => {
          const estimate = await mill.estimate({
            // A lab's op as loaded (--ops): its shape (keyed, inline) decides the plan.
            op: isBuiltinOp(registry.get(flags.op)) ? flags.op : registry.get(flags.op),
            inputs,
            params: flags.param,
            chunkSize,
            ...(flags.partitions !== undefined ? { partitions: flags.partitions } : {}),
            workers: flags.workers,
            maxWorkers: flags.maxWorkers,
            instanceType: flags.instanceType,
            ...(flags.spot ? { capacity: "spot" as const } : {}),
            ...(prices ? { prices } : {}),
            inlineMaxBytes,
            calibrate: flags.calibrate,
            fresh: flags.fresh,
            // The command's environment, not this process's: none named, no cache.
            cacheDir: calibrationCacheDir(io.env) ?? false,
          });
          const { calibration, ...figures } = estimate;
          const sampled = calibration && {
            file: calibration.input,
            bytes: calibration.bytes,
            ...(calibration.cachedAt ? { cachedAt: calibration.cachedAt } : {}),
          };
          io.stdout.write(flags.json ? `${JSON.stringify(figures, null, 2)}\n` : `${estimateText(figures, sampled)}\n`);
        });
        return;
      }
      const root = new FsBlobStore("/");
      const hidden = new HiddenFiles();
      const listed = await localInputs(inputs, root, hidden);
      const first = listed.find((f) => f.size > 0);
      const cacheDir = calibrationCacheDir(io.env);
      const cache = cacheDir ? { store: new CalibrationCache(cacheDir), fresh: flags.fresh } : undefined;
      const calibrated =
        flags.calibrate && first
          ? await calibrate(first.name, { op: flags.op, params: flags.param, chunkSize }, registry, cache, { opsModules: flags.ops }).catch(
              (err: unknown) => {
                // A sample that does not map on its own (a big compressed file or archive, cut short): the op's default rate.
                io.stderr.write(`cloudmill: no calibration on ${first.name}: ${toCloudmillError(err).message}; the op's default rate\n`);
                return undefined;
              },
            )
          : undefined;
      // Planned as the splitter plans the job: each input's codec found by its first bytes.
      const op = registry.get(flags.op);
      const sniffed = await withCodecs({ inputStore: () => root }, listed, chunkSize, { raw: estimatedFormat(op) === "blob" });
      const estimate = estimateJob({
        op: flags.op,
        ...estimatedPlan(op, sniffed, chunkSize, inlineMaxBytes),
        chunkSize,
        ...(flags.partitions !== undefined ? { partitions: flags.partitions } : {}),
        ...calibratedRates(calibrated),
        instanceType: flags.instanceType,
        ...(flags.spot ? { capacity: "spot" as const } : {}),
        ...(prices ? { prices: withPrices(prices) } : {}),
        workers: flags.workers,
        vcpusPerWorker: vcpus,
        maxWorkers: flags.maxWorkers,
        hidden,
      });
      io.stdout.write(
        flags.json
          ? `${JSON.stringify(estimate, null, 2)}\n`
          : `${estimateText(
              estimate,
              calibrated && first
                ? { file: first.name, bytes: calibrated.bytes, ...(calibrated.cachedAt ? { cachedAt: calibrated.cachedAt } : {}) }
                : undefined,
            )}\n`,
      );
    });
