/**
 * Calibrations kept between runs of `cloudmill estimate`: an op's rate, measured on a sample, is
 * reused when the same op code with the same params reads the same sample bytes on the same
 * machine type, so estimating a job again costs no second calibration. One small JSON file in
 * the user's cache directory (`$CLOUDMILL_CACHE_DIR`, else `$XDG_CACHE_HOME/cloudmill`, else
 * `~/.cache/cloudmill`); entries live 30 days, at most 256 of them. A missing or damaged file is
 * an empty cache.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import * as z from "zod";
import { writeFileAtomically } from "../fs/atomicFile.js";

/** Where the cache lives, when set. */
export const CACHE_DIR_ENV = "CLOUDMILL_CACHE_DIR";
const FILE = "calibrations.json";
const MAX_ENTRIES = 256;
const MAX_AGE_MS = 30 * 24 * 3600 * 1000;

const Entry = z.object({
  rate: z.number().positive(),
  reduceRate: z.number().positive().optional(),
  spilledReduceRate: z.number().positive().optional(),
  shared: z.number().positive().max(1).optional(),
  cold: z.number().nonnegative().optional(),
  bytes: z.number().int().nonnegative(),
  at: z.iso.datetime(),
});
export type CachedCalibration = z.infer<typeof Entry>;
const CacheFile = z.object({ entries: z.record(z.string(), Entry) });

/** The cache directory the environment names; undefined when it names none (no HOME either). */
export const calibrationCacheDir = (env: Readonly<Record<string, string | undefined>>): string | undefined => {
  if (env[CACHE_DIR_ENV]) return env[CACHE_DIR_ENV];
  if (env.XDG_CACHE_HOME) return path.join(env.XDG_CACHE_HOME, "cloudmill");
  return env.HOME ? path.join(env.HOME, ".cache", "cloudmill") : undefined;
};

/**
 * Bumped when calibrations are measured another way (2: a keyed op's reduce timed by its own
 * task, held and spilling; 3: a chunk-sized sample, and the share of its rate a task keeps beside another;
 * 4: a fresh thread's cold first chunk, and the median of three timed runs).
 */
const CALIBRATION_METHOD = 4;

/** The machine type a rate holds for: its architecture and CPU model. */
export const machineType = (): string => `${os.arch()} ${os.cpus()[0]?.model ?? "unknown CPU"}`;

const sha256 = (data: string | Uint8Array): string => createHash("sha256").update(data).digest("hex");

/** What a calibration depends on: the op, its code, its params, the sample's kind and bytes, the machine. */
export const calibrationKey = (parts: {
  readonly op: string;
  readonly digest: string;
  readonly params: Readonly<Record<string, string>>;
  readonly name: string;
  readonly sample: Uint8Array;
}): string =>
  sha256(
    JSON.stringify([
      // How a calibration is measured: a rate measured otherwise is not reused.
      CALIBRATION_METHOD,
      parts.op,
      parts.digest,
      Object.entries(parts.params).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      path.extname(parts.name),
      machineType(),
      sha256(parts.sample),
    ]),
  );

export class CalibrationCache {
  readonly #file: string;
  readonly #now: () => number;

  constructor(dir: string, now: () => number = Date.now) {
    this.#file = path.join(dir, FILE);
    this.#now = now;
  }

  async #entries(): Promise<Record<string, CachedCalibration>> {
    const text = await readFile(this.#file, "utf8").catch(() => undefined);
    if (text === undefined) return {};
    try {
      return CacheFile.parse(JSON.parse(text)).entries;
    } catch {
      return {};
    }
  }

  #fresh = (e: CachedCalibration): boolean => this.#now() - Date.parse(e.at) <= MAX_AGE_MS;

  /** The calibration stored under key, unless it is older than 30 days. */
  async get(key: string): Promise<CachedCalibration | undefined> {
    const entry = (await this.#entries())[key];
    return entry && this.#fresh(entry) ? entry : undefined;
  }

  /** Stores a calibration under key, dropping expired entries and the oldest past 256. */
  async set(key: string, calibration: Omit<CachedCalibration, "at">): Promise<void> {
    const entries = { ...(await this.#entries()), [key]: { ...calibration, at: new Date(this.#now()).toISOString() } };
    const kept = Object.entries(entries)
      .filter(([, e]) => this.#fresh(e))
      .sort(([, a], [, b]) => Date.parse(b.at) - Date.parse(a.at))
      .slice(0, MAX_ENTRIES);
    await mkdir(path.dirname(this.#file), { recursive: true });
    await writeFileAtomically(this.#file, `${JSON.stringify({ entries: Object.fromEntries(kept) })}\n`);
  }
}
