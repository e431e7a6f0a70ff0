/**
 * A lab's own ops in the emulated cloud (`cloudmill dev --ops`): the in-process roles and every
 * worker process load the module; a job records the op's name and code digest; the published
 * listing names them; and the integration suite's reference check rejects a wrong op run there.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS_LISTING_KEY } from "../../lib/core/keys.js";
import type { UserOp } from "../../lib/core/ops/defineOp.js";
import { defineOp } from "../../lib/core/ops/defineOp.js";
import { opsRegistry } from "../../lib/core/ops/opModules.js";
import { silentLogger } from "../../lib/core/log.js";
import { startDevCloud } from "../../lib/dev/devCloud.js";
import { Cloudmill } from "../../lib/sdk/index.js";
import {
  BIN,
  chunksOf,
  expectMatchesReference,
  linesOf,
  requireBuild,
  ROOT,
  startTestCloud,
  type TestCloud,
  textOf,
  WRONG_COUNT_OP,
} from "../helpers/devCloud.js";
import { runProcess } from "../helpers/processes.js";

let dir: string;
let opsModule: string;
let wrongModule: string;
let cloud: TestCloud;

/** This process's environment without CLOUDMILL_* settings, so a child CLI sees only its flags. */
const withoutCloudmillEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CLOUDMILL_")));

const DEFINE_OP = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;

beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-userops-"));
  opsModule = path.join(dir, "lab-ops.mjs");
  await writeFile(
    opsModule,
    `import { defineOp } from ${JSON.stringify(DEFINE_OP)};
// Bytes of each line without its newline, summed: wc -c minus wc -l for newline-terminated text.
export const lineBytes = defineOp({
  name: "line-bytes",
  format: "lines",
  orderFree: true,
  map: (line) => Buffer.byteLength(line),
  combine: (a, b) => a + b,
  finalize: (n) => ({ bytes: n ?? 0 }),
});
// Keyed: how many lines have each length in bytes, one part line per length.
export const lineLengths = defineOp({
  name: "line-lengths",
  format: "lines",
  pairs: (line, emit) => emit(String(Buffer.byteLength(line)), 1),
  combine: (a, b) => a + b,
  row: (length, lines) => ({ length: Number(length), lines }),
});
// Keyed with reduce: each length's lines handed over at once, in input order.
export const firstOfLength = defineOp({
  name: "first-of-length",
  format: "lines",
  pairs: (line, emit) => emit(String(Buffer.byteLength(line)), line),
  reduce: (length, lines) => ({ length: Number(length), first: lines[0], last: lines[lines.length - 1], lines: lines.length }),
});
`,
  );
  wrongModule = path.join(dir, "wrong-ops.mjs");
  await writeFile(wrongModule, WRONG_COUNT_OP);
  cloud = await startTestCloud({ chunkSize: 4096, opsModules: [opsModule, wrongModule] });
}, 90_000);

afterAll(async () => {
  await cloud?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

/** Runs a job spec for `op` over `bytes` uploaded at `key`; its final status and result. */
const runJob = async (jobId: string, op: string, key: string, bytes: Buffer) => {
  await cloud.put(key, bytes);
  await cloud.put(`_jobs/${jobId}.json`, JSON.stringify({ op, inputs: [`s3://${cloud.input}/${key}`] }));
  const status = await cloud.waitForEnd(`_jobs/${jobId}/status.json`);
  return { status, result: await cloud.getJson(cloud.output, `_jobs/${jobId}/result.json`) };
};

describe("a lab's op module in cloudmill dev", () => {
  it("runs on the worker processes over many chunks, exact against wc", async () => {
    // Plain LF lines (a line's bytes exclude its newline), so wc gives the reference.
    const bytes = Buffer.from(`${textOf(60_000, 11).toString("latin1").replaceAll("\r", "")}\n`, "latin1");
    const file = path.join(dir, "text.txt");
    await writeFile(file, bytes);
    const wc = (flag: string) => Number(execFileSync("wc", [flag, file], { encoding: "utf8" }).trim().split(/\s+/)[0]);
    const { status, result } = await runJob("user-op-bytes", "line-bytes", "data/text.txt", bytes);
    expect(status).toMatchObject({ state: "succeeded", chunks: chunksOf(bytes.length, 4096), op: "line-bytes" });
    expect(status.chunks).toBeGreaterThan(10);
    expect(result).toEqual({ bytes: wc("-c") - wc("-l") });
    // The workers, not the test process, mapped it: they logged its chunks.
    expect(linesOf(cloud.lines, "chunk done", { jobId: "user-op-bytes" }).length).toBeGreaterThan(0);
  });

  it("a keyed op (defineOp with pairs) runs its reduce tasks on the workers: parts equal awk's count per line length", async () => {
    const bytes = Buffer.from(`${textOf(50_000, 13).toString("latin1").replaceAll("\r", "")}\n`, "latin1");
    const file = path.join(dir, "lengths.txt");
    await writeFile(file, bytes);
    const awk = execFileSync("sh", ["-c", `LC_ALL=C awk '{ c[length($0)]++ } END { for (k in c) print k, c[k] }' "$1"`, "sh", file], {
      encoding: "utf8",
    });
    const expected = new Map(
      awk
        .trim()
        .split("\n")
        .map((l) => l.split(" ").map(Number) as [number, number]),
    );
    await cloud.put("data/lengths.txt", bytes);
    const spec = { op: "line-lengths", inputs: [`s3://${cloud.input}/data/lengths.txt`], partitions: 2 };
    await cloud.put("_jobs/user-op-keyed.json", JSON.stringify(spec));
    const status = await cloud.waitForEnd("_jobs/user-op-keyed/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    const result = (await cloud.getJson(cloud.output, "_jobs/user-op-keyed/result.json")) as { records: number; parts: { key: string }[] };
    const got = new Map<number, number>();
    for (const part of result.parts) {
      const body = (await cloud.get(cloud.output, part.key.replace(`s3://${cloud.output}/`, "")))!.toString("utf8");
      for (const line of body.split("\n").filter((l) => l !== "")) {
        const row = JSON.parse(line) as { length: number; lines: number };
        got.set(row.length, row.lines);
      }
    }
    expect(result.records).toBe(expected.size);
    expect(got).toEqual(expected);
  });

  it("a keyed op with reduce(key, values) gets each key's lines in input order across chunks: awk's first and last line per length", async () => {
    const bytes = Buffer.from(`${textOf(30_000, 17).toString("latin1").replaceAll("\r", "")}\n`, "latin1");
    const file = path.join(dir, "firsts.txt");
    await writeFile(file, bytes);
    const awk = execFileSync(
      "sh",
      [
        "-c",
        `LC_ALL=C awk '{ n = length($0); if (!(n in f)) f[n] = $0; l[n] = $0; c[n]++ } END { for (n in c) print n "\\001" c[n] "\\001" f[n] "\\001" l[n] }' "$1"`,
        "sh",
        file,
      ],
      { encoding: "latin1" },
    );
    const expected = new Map(
      awk
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => {
          const [n, c, first, last] = l.split("\x01") as [string, string, string, string];
          return [
            Number(n),
            { first: Buffer.from(first, "latin1").toString("utf8"), last: Buffer.from(last, "latin1").toString("utf8"), lines: Number(c) },
          ];
        }),
    );
    await cloud.put("data/firsts.txt", bytes);
    const spec = { op: "first-of-length", inputs: [`s3://${cloud.input}/data/firsts.txt`], partitions: 2, chunkSize: 2048 };
    await cloud.put("_jobs/user-op-reduce.json", JSON.stringify(spec));
    const status = await cloud.waitForEnd("_jobs/user-op-reduce/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    const result = (await cloud.getJson(cloud.output, "_jobs/user-op-reduce/result.json")) as { records: number; parts: { key: string }[] };
    const got = new Map<number, unknown>();
    for (const part of result.parts) {
      const body = (await cloud.get(cloud.output, part.key.replace(`s3://${cloud.output}/`, "")))!.toString("utf8");
      for (const line of body.split("\n").filter((l) => l !== "")) {
        const { length, ...rest } = JSON.parse(line) as { length: number };
        got.set(length, rest);
      }
    }
    expect(got).toEqual(expected);
  });

  it("records the op's code digest in status.json and publishes the deployed ops with theirs", async () => {
    const local = await opsRegistry([opsModule, wrongModule]);
    const { status } = await runJob("user-op-digest", "line-bytes", "data/small.txt", Buffer.from("a\nbb\n"));
    expect(status.opDigest).toBe(local.digestOf("line-bytes"));
    expect(status.opDigest).toMatch(/^[0-9a-f]{16}$/);
    const listing = (await cloud.getJson(cloud.output, OPS_LISTING_KEY)) as { ops: { name: string; digest: string }[] };
    expect(listing.ops.map((o) => o.name).sort()).toEqual([...local.names()].sort());
    expect(listing.ops.find((o) => o.name === "count-but-last")?.digest).toBe(local.digestOf("count-but-last"));
    expect(listing.ops.find((o) => o.name === "count")?.digest).toMatch(/^builtin-/);
  });

  it("a wrong op run by the workers is caught by the suite's reference check; the right one passes it", async () => {
    const bytes = textOf(30_000, 12);
    const wrong = await runJob("user-op-wrong", "count-but-last", "data/wrong.txt", bytes);
    expect(wrong.status.state).toBe("succeeded");
    expect(() => expectMatchesReference("count", {}, bytes, wrong.result)).toThrow(/not the reference's answer/);
    const right = await runJob("user-op-right", "count", "data/right.txt", bytes);
    expectMatchesReference("count", {}, bytes, right.result);
  });
});

describe("the deployed ops, from a client", () => {
  it("`cloudmill ops --endpoint` lists them with the digests jobs record", async () => {
    const local = await opsRegistry([opsModule, wrongModule]);
    const r = await runProcess(process.execPath, [BIN, "ops", "--endpoint", cloud.cloud.endpoint], {
      cwd: ROOT,
      env: withoutCloudmillEnv(),
    });
    expect(r.code, r.stderr).toBe(0);
    for (const name of ["line-bytes", "count-but-last", "count"]) {
      expect(r.stdout).toContain(`${name}  (lines)  code ${local.digestOf(name)}`);
    }
  });

  it("an SDK map with the deployed op's own code names its digest in the spec; a spec naming other code is refused", async () => {
    const local = await opsRegistry([opsModule, wrongModule]);
    const file = path.join(dir, "checked.txt");
    await writeFile(file, "a\nbb\n");
    const mill = new Cloudmill({ endpoint: cloud.cloud.endpoint });
    try {
      const [future] = mill.map(local.get("line-bytes") as UserOp<unknown, number, number>, [file]);
      await future!.result();
      const spec = (await cloud.getJson(cloud.input, `_jobs/${future!.id}.json`)) as { opDigest?: string };
      expect(spec.opDigest).toBe(local.digestOf("line-bytes"));
    } finally {
      mill.close();
    }
    await cloud.put("_inputs/other-code.txt", "a\n");
    const spec = { op: "line-bytes", inputs: [`s3://${cloud.input}/_inputs/other-code.txt`], opDigest: "0123456789abcdef" };
    await cloud.put("_jobs/other-code.json", JSON.stringify(spec));
    const status = await cloud.waitForEnd("_jobs/other-code/status.json");
    expect(status.error).toMatchObject({ code: "OP_MISMATCH", message: expect.stringContaining("submitted for code 0123456789abcdef") });
  });

  it("an SDK map with a local op whose code differs from the deployed one fails before anything is uploaded", async () => {
    // Same name as the deployed op; its map counts characters, not bytes.
    const local = defineOp({
      name: "line-bytes",
      format: "lines",
      map: (l: unknown) => String(l).length,
      combine: (a: number, b: number) => a + b,
    });
    const file = path.join(dir, "never-uploaded.txt");
    await writeFile(file, "x\n");
    const before = await cloud.keys(cloud.input, "");
    const mill = new Cloudmill({ endpoint: cloud.cloud.endpoint });
    try {
      const [future] = mill.map(local, [file]);
      await expect(future!.result()).rejects.toMatchObject({
        code: "OP_MISMATCH",
        message: expect.stringMatching(/^op line-bytes: your code is [0-9a-f]{16}, the deployed op is [0-9a-f]{16}; restart/),
      });
      const [unknown] = mill.map(
        defineOp({ name: "not-deployed", format: "lines", map: () => 1, combine: (a: number, b: number) => a + b }),
        [file],
      );
      await expect(unknown!.result()).rejects.toMatchObject({ code: "UNKNOWN_OP" });
    } finally {
      mill.close();
    }
    expect(await cloud.keys(cloud.input, "")).toEqual(before);
  });
});

describe("a bad op module", () => {
  it("stops `cloudmill dev` from starting, with one error naming the module", async () => {
    const broken = path.join(dir, "broken.mjs");
    await writeFile(broken, 'throw new Error("the lab forgot a file");\n');
    await expect(startDevCloud({ log: silentLogger, workers: 0, opsModules: [broken] })).rejects.toMatchObject({
      code: "INVALID_SPEC",
      // Named as a path, as `run --ops` names it, though the dev cloud hands modules on as file: URLs.
      message: `--ops ${broken}: cannot load (the lab forgot a file)`,
    });
    const empty = path.join(dir, "empty.mjs");
    await writeFile(empty, "export const nothing = 1;\n");
    await expect(startDevCloud({ log: silentLogger, workers: 0, opsModules: [empty] })).rejects.toMatchObject({
      code: "INVALID_SPEC",
      message: expect.stringContaining("exports no op"),
    });
  });
});
