/**
 * Hostile inputs, one test per row: each gets an exact result or a clear error (code, where,
 * why), through the emulated cloud (real worker processes) and, for data, the local engine
 * too. None may crash a worker or leave a half-written result. The data and the workers'
 * credentials carry canary strings; afterwards no log line of any role may hold one.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runLocal } from "../../lib/local/localEngine.js";
import { CloudmillError } from "../../lib/core/errors.js";
import { parseJobSpec, parseJobSpecJson, type JobSpecInput } from "../../lib/core/job/spec.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { getObject, listKeys, putObject, startCloud, statusAt, waitFor, type ChaosCloud } from "./helpers.js";

/** In the data: must never reach a log line. */
const DATA_CANARY = "CANARY-d4t4";
/** The workers' AWS credentials: must never reach a log line. */
const KEY_CANARY = "AKIACANARYKEY0000001";
const SECRET_CANARY = "canarySecret/9f8e7d6c5b4a3f2e1d0c";
const CHUNK = 1024;

let c: ChaosCloud;
let dir: string;
let pidsAtStart: number[];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-hostile-"));
  c = await startCloud({
    workers: 2,
    workerConcurrency: 2,
    chunkSize: CHUNK,
    maxAttempts: 2,
    visibilitySeconds: 10,
    hostLogLevel: "debug",
    workerEnv: { POWERTOOLS_LOG_LEVEL: "DEBUG", AWS_ACCESS_KEY_ID: KEY_CANARY, AWS_SECRET_ACCESS_KEY: SECRET_CANARY },
  });
  await waitFor("worker processes", () => (c.cloud.workerPids().every((p) => p > 0) ? true : undefined), 30_000);
  pidsAtStart = c.cloud.workerPids();
}, 120_000);

afterAll(async () => {
  await c?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

type Spec = Omit<JobSpecInput, "inputs">;

/** What a row must end in: a result (and records skipped), or a failure with this code and message. */
type Expected =
  | { readonly result: unknown; readonly skipped?: number }
  | { readonly code: string; readonly cloud: RegExp; readonly local?: RegExp; readonly line?: number; readonly offset?: number };

interface DataRow {
  readonly name: string;
  readonly bytes: Buffer | string;
  readonly spec: Spec;
  readonly expected: Expected;
  /** Upload under this key (`<op>/...`) instead of a job spec. */
  readonly uploadKey?: string;
}

const slug = (name: string): string =>
  name
    .replace(/[^a-z0-9]+/gi, "-")
    .replace(/^-|-$/g, "")
    .toLowerCase();
const s3 = (key: string): string => `s3://cloudmill-input/${key}`;
const long = "x".repeat(5 * CHUNK);

const DATA: readonly DataRow[] = [
  { name: "an empty (zero-byte) file, counted", bytes: "", spec: { op: "count" }, expected: { result: { records: 0 } } },
  {
    name: "an empty (zero-byte) file, stats",
    bytes: "",
    spec: { op: "stats" },
    expected: { result: { count: 0, sum: 0, min: null, max: null, mean: null, variance: null } },
  },
  {
    name: "CRLF line endings",
    bytes: "a b\r\nc\r\n\r\nd\r\n",
    spec: { op: "wordcount" },
    expected: {
      result: {
        total: 4,
        distinct: 4,
        top: [
          ["a", 1],
          ["b", 1],
          ["c", 1],
          ["d", 1],
        ],
      },
    },
  },
  { name: "CRLF lines counted", bytes: "a b\r\nc\r\n\r\n", spec: { op: "count" }, expected: { result: { records: 3 } } },
  { name: "no final newline", bytes: "one\ntwo\nthree", spec: { op: "count" }, expected: { result: { records: 3 } } },
  {
    name: "a UTF-8 byte-order mark before numbers",
    bytes: "\uFEFF1\n2\n3\n",
    spec: { op: "stats" },
    expected: { result: { count: 3, sum: 6, min: 1, max: 3, mean: 2, variance: 2 / 3 } },
  },
  {
    name: "a UTF-8 byte-order mark before words",
    bytes: "\uFEFFhello world hello",
    spec: { op: "wordcount" },
    expected: {
      result: {
        total: 3,
        distinct: 2,
        top: [
          ["hello", 2],
          ["world", 1],
        ],
      },
    },
  },
  {
    name: "a record five times longer than the chunk",
    bytes: `${long}\nshort\n${long}\nshort\n`,
    spec: { op: "wordcount", chunkSize: CHUNK },
    expected: {
      result: {
        total: 4,
        distinct: 2,
        top: [
          ["short", 2],
          [long, 2],
        ],
      },
    },
  },
  {
    name: "a record longer than the chunk, counted",
    bytes: `a\n${long}\nb\n${long}`,
    spec: { op: "count", chunkSize: CHUNK },
    expected: { result: { records: 4 } },
  },
  {
    name: "invalid UTF-8",
    bytes: Buffer.from([0x66, 0x6f, 0xff, 0xfe, 0x20, 0x62, 0x61, 0x72, 0x0a, 0xc3, 0x28, 0x0a]),
    spec: { op: "wordcount" },
    expected: {
      result: {
        total: 3,
        distinct: 3,
        top: [
          ["bar", 1],
          ["fo\uFFFD\uFFFD", 1],
          ["\uFFFD(", 1],
        ],
      },
    },
  },
  {
    name: "invalid UTF-8, counted",
    bytes: Buffer.from([0xff, 0x0a, 0xfe, 0xfe, 0x0a, 0x80]),
    spec: { op: "count" },
    expected: { result: { records: 3 } },
  },
  {
    name: "NUL bytes",
    bytes: "a\0b c\n\0\n",
    spec: { op: "wordcount" },
    expected: {
      result: {
        total: 3,
        distinct: 3,
        top: [
          ["\0", 1],
          ["a\0b", 1],
          ["c", 1],
        ],
      },
    },
  },
  {
    name: "a CSV with an unbalanced quote",
    bytes: `k,v\n"${DATA_CANARY},1\nb,2\n`,
    spec: { op: "stats", format: "csv", params: { column: "v" } },
    expected: {
      code: "BAD_RECORD",
      cloud: /\(byte 4\): unterminated quoted field/,
      local: /:2 \(byte 4\): unterminated quoted field/,
      line: 2,
      offset: 4,
    },
  },
  {
    // Skipping would drop every record after the open quote: a quote that never closes fails the job.
    name: "a CSV with an unbalanced quote, even with skipping asked for",
    bytes: `k,v\n"${DATA_CANARY},1\nb,2\n`,
    spec: { op: "stats", format: "csv", params: { column: "v" }, onBadRecord: "skip" },
    expected: {
      code: "BAD_RECORD",
      cloud: /\(byte 4\): unterminated quoted field/,
      local: /:2 \(byte 4\): unterminated quoted field/,
      line: 2,
      offset: 4,
    },
  },
  {
    name: "a CSV with an unbalanced quote, one record per line, skipped on request",
    bytes: `k,v\n"${DATA_CANARY},1\nb,2\n`,
    spec: { op: "stats", format: "csv", params: { column: "v", multiline: false }, onBadRecord: "skip" },
    expected: { result: { count: 1, sum: 2, min: 2, max: 2, mean: 2, variance: 0 }, skipped: 1 },
  },
  {
    name: "a malformed number",
    bytes: `1\n2\n${DATA_CANARY}3\n4\n`,
    spec: { op: "stats" },
    expected: {
      code: "BAD_RECORD",
      cloud: new RegExp(`\\(byte 4\\): expected a number, got "${DATA_CANARY}3"$`),
      local: new RegExp(`:3 \\(byte 4\\): expected a number, got "${DATA_CANARY}3"$`),
      line: 3,
      offset: 4,
    },
  },
  {
    name: "malformed numbers, counted and skipped on request",
    bytes: `1\n2\n${DATA_CANARY}3\n4\n1e999\n`,
    spec: { op: "stats", onBadRecord: "skip" },
    expected: { result: { count: 3, sum: 7, min: 1, max: 4, mean: 7 / 3, variance: 14 / 9 }, skipped: 2 },
  },
  {
    name: "JSONL with a broken line",
    bytes: `{"v":1}\n{"v":2,"note":"${DATA_CANARY}"\n{"v":4}\n`,
    spec: { op: "stats", format: "jsonl", params: { field: "v" } },
    expected: { code: "BAD_RECORD", cloud: /\(byte 8\): invalid JSON/, local: /:2 \(byte 8\): invalid JSON/, line: 2, offset: 8 },
  },
  {
    name: "JSONL with a broken line, skipped on request",
    bytes: `{"v":1}\n{"v":2,"note":"${DATA_CANARY}"\n{"v":4}\n`,
    spec: { op: "stats", format: "jsonl", params: { field: "v" }, onBadRecord: "skip" },
    expected: { result: { count: 2, sum: 5, min: 1, max: 4, mean: 2.5, variance: 2.25 }, skipped: 1 },
  },
  {
    name: "an upload key with spaces, +, unicode and percent signs",
    bytes: "a\nb\n",
    spec: { op: "count" },
    uploadKey: "count/dir with space/a+b ü 日本 100% %2F %20.txt",
    expected: { result: { records: 2 } },
  },
  {
    name: "words named __proto__, constructor and toString",
    bytes: "__proto__ constructor __proto__ toString hasOwnProperty\n",
    spec: { op: "wordcount" },
    expected: {
      result: {
        total: 5,
        distinct: 4,
        top: [
          ["__proto__", 2],
          ["constructor", 1],
          ["hasOwnProperty", 1],
          ["toString", 1],
        ],
      },
    },
  },
  {
    name: "a CSV header naming __proto__ and constructor",
    bytes: "__proto__,constructor,v\n1,2,3\n4,5,6\n",
    spec: { op: "stats", format: "csv", params: { column: "v" } },
    expected: { result: { count: 2, sum: 9, min: 3, max: 6, mean: 4.5, variance: 2.25 } },
  },
  {
    name: "JSONL whose records carry __proto__",
    bytes: `{"__proto__":{"v":5},"v":1}\n{"constructor":{"prototype":{"v":9}},"v":2}\n`,
    spec: { op: "stats", format: "jsonl", params: { field: "v" } },
    expected: { result: { count: 2, sum: 3, min: 1, max: 2, mean: 1.5, variance: 0.25 } },
  },
];

/** A job spec uploaded as `_jobs/<id>.json`; `text` is the raw upload when given. */
interface SpecRow {
  readonly name: string;
  readonly text: string | ((inputUri: string) => string);
  readonly code: string;
  readonly message: RegExp;
  readonly field?: string;
  /** An upload under `<op>/...` instead of a job spec. */
  readonly uploadKey?: string;
}

const SPECS: readonly SpecRow[] = [
  {
    name: "a job spec that is not JSON",
    text: `{op: count, "${DATA_CANARY}"`,
    code: "INVALID_SPEC",
    message: /^job spec _jobs\/[^ ]+\.json: not valid JSON/,
  },
  {
    name: "a job spec larger than 256 KiB",
    text: (uri) => JSON.stringify({ op: "count", inputs: [uri], id: undefined, pad: DATA_CANARY.repeat(30_000) }),
    code: "INVALID_SPEC",
    message: /larger than 262144 bytes$/,
  },
  {
    name: "an unknown op",
    text: (uri) => JSON.stringify({ op: "nope", inputs: [uri] }),
    code: "UNKNOWN_OP",
    message: /^unknown op "nope" \(known: checksum, count, distinct, grep, groupby, histogram, sort, stats, wordcount\)$/,
    field: "op",
  },
  {
    name: "an upload under an unknown op",
    text: "",
    uploadKey: "constructor/data.txt",
    code: "UNKNOWN_OP",
    message: /^unknown op "constructor"/,
  },
  {
    name: "a negative chunk size",
    text: (uri) => JSON.stringify({ op: "count", inputs: [uri], chunkSize: -5 }),
    code: "INVALID_SPEC",
    message: /chunkSize: must be between 1 byte and 1GiB, got -5$/,
    field: "chunkSize",
  },
  {
    name: "an absurd chunk size",
    text: (uri) => JSON.stringify({ op: "count", inputs: [uri], chunkSize: "10TiB" }),
    code: "INVALID_SPEC",
    message: /chunkSize: must be between 1 byte and 1GiB/,
    field: "chunkSize",
  },
  {
    name: "a chunk size too small for the input (more than a million chunks)",
    text: (uri) => JSON.stringify({ op: "count", inputs: [uri.replace(/[^/]+$/, "big.txt")], chunkSize: 1 }),
    code: "INVALID_SPEC",
    message: /chunks at chunk size 1 is more than the 1000000 a job may have: use a larger chunk size$/,
    field: "chunkSize",
  },
  {
    name: "an op name with path characters",
    text: (uri) => JSON.stringify({ op: "../../tmp/evil", inputs: [uri] }),
    code: "INVALID_SPEC",
    message: /op: must be a lowercase name like `wordcount`/,
    field: "op",
  },
  {
    name: "an upload whose op is a file URL",
    text: "",
    uploadKey: "file:evil/data.txt",
    code: "INVALID_SPEC",
    message: /op: must be a lowercase name like `wordcount`/,
  },
  {
    name: "a job spec naming code to load",
    text: (uri) => JSON.stringify({ op: "count", inputs: [uri], ops: "file:///tmp/evil.mjs" }),
    code: "INVALID_SPEC",
    message: /unknown field "ops"$/,
  },
  {
    name: "params that try prototype pollution (constructor.prototype)",
    text: (uri) => `{"op":"count","inputs":[${JSON.stringify(uri)}],"params":{"constructor":{"prototype":{"polluted":"yes"}}}}`,
    code: "INVALID_SPEC",
    message: /params\.constructor/,
  },
  {
    name: "a job spec with a top-level __proto__",
    text: (uri) => `{"op":"count","inputs":[${JSON.stringify(uri)}],"__proto__":{"polluted":"yes","chunkSize":-1}}`,
    code: "INVALID_SPEC",
    message: /unknown field "__proto__"$/,
  },
  {
    name: "a job spec naming a missing input",
    text: () => JSON.stringify({ op: "count", inputs: [s3("_inputs/not-there.txt")] }),
    code: "INPUT_NOT_FOUND",
    message: /no such object or prefix$/,
  },
];

/** The terminal status at `key`, and the keys of the job's outputs. */
const waitForEnd = async (statusKey: string) =>
  waitFor(
    `a final status at ${statusKey}`,
    async () => {
      const s = await statusAt(c, statusKey);
      return s && s.state !== "running" ? s : undefined;
    },
    120_000,
    300,
  );

describe.concurrent("hostile data, through the emulated cloud and the local engine", () => {
  it.each(DATA)(
    "$name",
    async (row) => {
      const id = `hostile-${slug(row.name)}`;
      // Through the emulated cloud: an upload under <op>/ when the row needs no params, else a job spec.
      let statusKey: string;
      let resultKey: string;
      if (row.uploadKey || (!row.spec.params && !row.spec.format && !row.spec.onBadRecord && !row.spec.chunkSize)) {
        const key = row.uploadKey ?? `${row.spec.op}/hostile/${slug(row.name)}.txt`;
        await putObject(c, key, row.bytes);
        statusKey = `${key}/status.json`;
        resultKey = `${key}/result.json`;
      } else {
        const input = `_inputs/${slug(row.name)}.txt`;
        await putObject(c, input, row.bytes);
        await putObject(
          c,
          `_jobs/${id}.json`,
          JSON.stringify({ ...row.spec, inputs: [s3(input)], chunkSize: row.spec.chunkSize ?? CHUNK }),
        );
        statusKey = `_jobs/${id}/status.json`;
        resultKey = `_jobs/${id}/result.json`;
      }
      const status = await waitForEnd(statusKey);
      const result = await getObject(c, c.outputBucket, resultKey);

      // The same bytes through the local engine.
      const file = path.join(dir, `${slug(row.name)}.txt`);
      await writeFile(file, row.bytes);
      const local = await runLocal({
        spec: parseJobSpec({ ...row.spec, inputs: [file], chunkSize: row.spec.chunkSize ?? CHUNK }),
        registry: new OpRegistry(),
        workers: 0,
      }).then(
        (r) => ({ ok: true as const, ...r }),
        (e: unknown) => ({ ok: false as const, error: e }),
      );

      if ("result" in row.expected) {
        expect(status, JSON.stringify(status.error)).toMatchObject({
          state: "succeeded",
          ...(row.expected.skipped ? { skipped: row.expected.skipped } : {}),
        });
        expect(JSON.parse(result!.toString("utf8"))).toEqual(row.expected.result);
        expect(local.ok && local.result).toEqual(row.expected.result);
        if (local.ok && row.expected.skipped) expect(local.status.skipped).toBe(row.expected.skipped);
      } else {
        const e = row.expected;
        expect(status.state).toBe("failed");
        expect(status.error).toMatchObject({ code: e.code, ...(e.offset !== undefined ? { offset: e.offset } : {}) });
        expect(status.error!.message).toMatch(e.cloud);
        expect(status.error!.input).toMatch(/^s3:\/\/cloudmill-input\//);
        expect(result).toBeUndefined(); // no half-written result
        expect(local.ok).toBe(false);
        const err = (local as { error: unknown }).error;
        expect(err).toBeInstanceOf(CloudmillError);
        expect(err).toMatchObject({ code: e.code });
        // The local engine names the file and the line (and the byte offset).
        expect((err as CloudmillError).describe()).toMatch(e.local ?? e.cloud);
        if (e.line !== undefined) expect((err as CloudmillError).describe()).toContain(`${file}:${e.line} `);
        expect((err as CloudmillError).describe().startsWith(`${file}:`)).toBe(true);
      }
    },
    180_000,
  );
});

describe.concurrent("hostile job specs and op names, through the emulated cloud", () => {
  beforeAll(async () => {
    await putObject(c, "_inputs/spec-input.txt", "a\nb\n");
    await putObject(c, "_inputs/big.txt", Buffer.alloc(1_200_000, "a"));
  });

  it.each(SPECS)(
    "$name",
    async (row) => {
      const id = `spec-${slug(row.name)}`;
      let statusKey: string;
      let resultKey: string;
      if (row.uploadKey) {
        await putObject(c, row.uploadKey, "a\nb\n");
        statusKey = `${row.uploadKey}/status.json`;
        resultKey = `${row.uploadKey}/result.json`;
      } else {
        const text = typeof row.text === "function" ? row.text(s3("_inputs/spec-input.txt")) : row.text;
        await putObject(c, `_jobs/${id}.json`, text);
        statusKey = `_jobs/${id}/status.json`;
        resultKey = `_jobs/${id}/result.json`;
      }
      const status = await waitForEnd(statusKey);
      expect(status.state).toBe("failed");
      expect(status.error).toMatchObject({ code: row.code });
      expect(status.error!.message).toMatch(row.message);
      // Refused before any work: no tasks, no result.
      expect(status.chunks).toBe(0);
      expect(await getObject(c, c.outputBucket, resultKey)).toBeUndefined();
      expect(await listKeys(c, c.outputBucket, `_work/${status.jobId}/parts/`)).toEqual([]);
    },
    180_000,
  );
});

describe("prototype pollution through params", () => {
  it("a params key __proto__ is dropped, never applied: the job runs with no params and gives the exact result", async () => {
    const text = `{"op":"count","inputs":[${JSON.stringify(s3("_inputs/spec-input.txt"))}],"params":{"__proto__":{"polluted":"yes","header":false}}}`;
    // In this process: parsed, the key is gone and no prototype changed.
    const spec = parseJobSpecJson(text);
    expect(Object.keys(spec.params)).toEqual([]);
    expect(Object.getPrototypeOf(spec.params)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
    // Through the cloud: the same.
    await putObject(c, "_inputs/spec-input.txt", "a\nb\n");
    await putObject(c, "_jobs/spec-proto-params.json", text);
    const status = await waitForEnd("_jobs/spec-proto-params/status.json");
    expect(status.state).toBe("succeeded");
    expect(JSON.parse((await getObject(c, c.outputBucket, "_jobs/spec-proto-params/result.json"))!.toString("utf8"))).toEqual({
      records: 2,
    });
    const manifest = JSON.parse((await getObject(c, c.outputBucket, `_work/${status.jobId}/manifest.json`))!.toString("utf8")) as {
      job: { params: object };
    };
    expect(manifest.job.params).toEqual({});
  }, 180_000);
});

describe("after every row", () => {
  it("no worker crashed or was replaced, no queue holds anything, and this process's prototypes are clean", async () => {
    await waitFor("the queues to drain", async () => ((await c.idle()) ? true : undefined), 120_000, 500);
    expect(c.cloud.workerPids()).toEqual(pidsAtStart);
    expect(c.counts.get("worker exited; starting a new one") ?? 0).toBe(0);
    expect(c.lines.filter((l) => l.source !== "host" && /worker crashed|Unhandled|uncaught/i.test(l.raw))).toEqual([]);
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
    expect((Object.prototype as unknown as Record<string, unknown>)["chunkSize"]).toBeUndefined();
  }, 180_000);

  it("no log line of any role (host or worker, at DEBUG) holds object contents or credentials", () => {
    // The canaries did reach where they belong: a failed job's status quotes the bad record.
    expect(c.lines.length).toBeGreaterThan(100);
    const leaks = c.lines.filter((l) => [DATA_CANARY, KEY_CANARY, SECRET_CANARY, "canarySecret"].some((canary) => l.raw.includes(canary)));
    expect(leaks.map((l) => `[${l.source}] ${l.raw}`)).toEqual([]);
  });
});
