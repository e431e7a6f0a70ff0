/**
 * The README's SDK section runs as shown against `cloudmill dev`: its
 * three-line example, its CLI session (each `$ npx cloudmill ...` line, run through the
 * installed bin), and examples/sdk.ts. Needs the compiled dist/ (`npm run build`).
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { SqsTaskQueue } from "../../lib/aws/SqsTaskQueue.js";
import { startDevCloud, type DevCloud } from "../../lib/dev/devCloud.js";
import { silentLogger } from "../../lib/core/log.js";
import { parseS3Uri } from "../../lib/core/s3Uri.js";
import { chunksOf, expectMatchesReference, spawnChild } from "../helpers/devCloud.js";
import { runProcess, shellWords } from "../helpers/processes.js";
import { refCount, refGrep, refStats, refWordcount } from "../helpers/reference.js";
import { childEnv } from "./support.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const BIN = path.join(ROOT, "bin/cloudmill.js");
/** The README's SDK section, from its heading to the next one. */
const README = ((text: string) => {
  const start = text.indexOf("## From a script or a notebook: the SDK");
  if (start < 0) throw new Error("README.md has no SDK section");
  const end = text.indexOf("\n## ", start + 3);
  return text.slice(start, end < 0 ? undefined : end);
})(await readFile(path.join(ROOT, "README.md"), "utf8"));
const JOB_ID = /job-\d{8}T\d{6}-[0-9a-f]{16}/g;

/** The fenced blocks of a markdown text, with their info strings. */
const blocks = (md: string): { info: string; lines: string[] }[] =>
  [...md.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ info: m[1]!, lines: m[2]!.replace(/\n$/, "").split("\n") }));

const exampleBytes = (name: string): Promise<Buffer> => readFile(path.join(ROOT, "examples", name));

/**
 * Fails unless `result` is the reference's answer for a `submit` command line as the README
 * writes it: `submit <one input> --op <op> [--param name=value]...`.
 */
const expectCommandMatchesReference = async (args: readonly string[], result: unknown): Promise<void> => {
  const params: Record<string, string> = {};
  for (const [i, a] of args.entries()) {
    if (args[i - 1] !== "--param" && args[i - 1] !== "-p") continue;
    const eq = a.indexOf("=");
    params[a.slice(0, eq)] = a.slice(eq + 1);
  }
  expect(args.includes("--format"), "the reference reads each op's default format only").toBe(false);
  expectMatchesReference(args[args.indexOf("--op") + 1]!, params, await readFile(path.join(cwd, args[1]!)), result);
};

/** Bytes in a size as the README and examples/sdk.ts write it: `16KiB`, `1KiB`, `4KiB`. */
const bytesOf = (size: string): number => {
  const m = /^(\d+)(KiB|MiB)?$/.exec(size);
  if (!m) throw new Error(`not a size this test reads: ${size}`);
  return Number(m[1]) * (m[2] === "MiB" ? 1024 * 1024 : m[2] === "KiB" ? 1024 : 1);
};

/** Chunks of a `submit <input> ... --chunk-size <size>` command line, from the input's size. */
const chunksOfCommand = async (args: readonly string[]): Promise<number> =>
  chunksOf((await stat(path.join(cwd, args[1]!))).size, bytesOf(args[args.indexOf("--chunk-size") + 1]!));

let cloud: DevCloud;
let cwd: string;
/** What the dev cloud's worker processes printed (Powertools JSON logs). */
const workerLines: string[] = [];

/** The workers' "chunk done" lines for a job: which chunk, and what became of it. */
const chunksDone = (jobId: string): { chunk: number; outcome: string }[] =>
  workerLines.flatMap((raw) => {
    if (!raw.startsWith("{")) return [];
    const j = JSON.parse(raw) as Record<string, unknown>;
    return j["message"] === "chunk done" && j["jobId"] === jobId ? [{ chunk: Number(j["chunk"]), outcome: String(j["outcome"]) }] : [];
  });

const outputKeys = async (prefix: string): Promise<string[]> => {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const list = new ListObjectsV2Command({ Bucket: cloud.outputBucket, Prefix: prefix, ContinuationToken: token });
    const res = await cloud.clients.s3.send(list);
    keys.push(...(res.Contents ?? []).map((o) => o.Key!));
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token);
  return keys;
};

const outputExists = async (key: string): Promise<boolean> =>
  cloud.clients.s3.send(new HeadObjectCommand({ Bucket: cloud.outputBucket, Key: key })).then(
    () => true,
    (err: unknown) => {
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
      throw err;
    },
  );

const statusOf = async (jobId: string): Promise<Record<string, unknown>> => {
  const res = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: cloud.outputBucket, Key: `_jobs/${jobId}/status.json` }));
  return JSON.parse(await res.Body!.transformToString()) as Record<string, unknown>;
};

/** Waits until the splitter has queued every task of a job (it writes `enqueued.json` then). */
const allQueued = (jobId: string): Promise<void> =>
  vi.waitFor(async () => expect(await outputExists(`_work/${jobId}/enqueued.json`)).toBe(true), { timeout: 30_000, interval: 50 });

/** Jobs that have a cancel marker (`_work/<id>/cancelled.json`). */
const cancelledJobs = async (): Promise<string[]> =>
  (await outputKeys("_work/")).flatMap((k) => /^_work\/([^/]+)\/cancelled\.json$/.exec(k)?.[1] ?? []);

/** A process's state letter from /proc (T: stopped by a signal). */
const processState = async (pid: number): Promise<string> => {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
};

/**
 * Stops the dev cloud's worker processes (SIGSTOP) until the returned resume() is called, so
 * that a job submitted meanwhile cannot make progress, whatever the machine's speed: a cancel
 * then meets it with no chunk done, every time. Tasks a stopped worker's pending long poll
 * takes stay in flight until it resumes.
 */
const pauseWorkers = async (): Promise<() => void> => {
  const pids = cloud.workerPids();
  expect(pids.every((p) => p > 0)).toBe(true);
  for (const pid of pids) process.kill(pid, "SIGSTOP");
  // Stopped once the kernel says so, not after a guessed delay.
  await vi.waitFor(async () => expect(await Promise.all(pids.map(processState))).toEqual(pids.map(() => "T")), {
    timeout: 10_000,
    interval: 20,
  });
  let resumed = false;
  return () => {
    if (resumed) return;
    resumed = true;
    for (const pid of pids) process.kill(pid, "SIGCONT");
  };
};

/**
 * For a job cancelled while the workers were paused (since before it was submitted): it is
 * cancelled with nothing done and no result; once the workers resume, they take every one of
 * its `chunks` chunks and skip each (no chunk mapped, no part written), and it stays so.
 */
const expectCancelledAndSkipped = async (jobId: string, chunks: number, resume: () => void): Promise<void> => {
  // A cancel may come before the splitter has run; it queues every task all the same.
  await allQueued(jobId);
  const cancelled = { jobId, state: "cancelled", done: 0 };
  expect(await statusOf(jobId)).toMatchObject(cancelled);
  expect(await outputExists(`_jobs/${jobId}/result.json`)).toBe(false);
  expect(chunksDone(jobId)).toEqual([]);
  resume();
  // Every task of the job is taken (a worker logs its chunk once it has deleted the task).
  await vi.waitFor(() => expect(new Set(chunksDone(jobId).map((c) => c.chunk)).size).toBe(chunks), { timeout: 60_000, interval: 100 });
  expect(new Set(chunksDone(jobId).map((c) => c.chunk))).toEqual(new Set(Array.from({ length: chunks }, (_, i) => i)));
  expect(chunksDone(jobId).filter((c) => c.outcome !== "job-ended")).toEqual([]);
  expect(await new SqsTaskQueue(cloud.clients.sqs, cloud.taskQueueUrl).depth()).toEqual({ visible: 0, inFlight: 0 });
  expect(await outputKeys(`_work/${jobId}/parts/`)).toEqual([]);
  expect(await outputExists(`_jobs/${jobId}/result.json`)).toBe(false);
  expect(await statusOf(jobId)).toMatchObject(cancelled);
};

beforeAll(async () => {
  cloud = await startDevCloud({
    port: 0,
    workers: 2,
    // As the README's session starts it: every chunk to the workers (README: "--inline-max-bytes 0").
    inlineMaxBytes: 0,
    chunkSize: 64 * 1024,
    log: silentLogger,
    onWorkerOutput: (_, line) => workerLines.push(line),
  });
  // A user's directory: the examples beside them, a file written by --out lands here.
  cwd = await mkdtemp(path.join(os.tmpdir(), "cloudmill-readme-"));
  await symlink(path.join(ROOT, "examples"), path.join(cwd, "examples"));
}, 60_000);

afterAll(async () => {
  await cloud?.stop();
  await rm(cwd, { recursive: true, force: true });
}, 60_000);

describe("the README's SDK section against cloudmill dev", () => {
  it("the three-line example prints what the README shows", async () => {
    const [example, shown] = blocks(README);
    expect(example!.info).toBe("ts");
    expect(example!.lines.slice(0, 3).every((l) => !l.startsWith("//"))).toBe(true);
    const code = example!.lines.join("\n").replace("http://127.0.0.1:4566", cloud.endpoint);
    // Inside the package, so `import … from "cloudmill"` resolves to the package itself (dist/).
    const file = path.join(ROOT, "dist", `.readme-example-${randomBytes(4).toString("hex")}.mjs`);
    await writeFile(file, code);
    try {
      const r = await runProcess(process.execPath, [file], { cwd: ROOT, env: childEnv() });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual(JSON.parse(shown!.lines.join("")));
    } finally {
      await rm(file, { force: true });
    }
    const printed = JSON.parse(shown!.lines.join("")) as unknown[];
    expect(printed).toHaveLength(2);
    expectMatchesReference("wordcount", { k: 3 }, await exampleBytes("words.txt"), printed[0]);
    expectMatchesReference("wordcount", { k: 3 }, await exampleBytes("events.jsonl"), printed[1]);
  }, 60_000);

  it("the CLI session runs as shown: submit --wait, submit, status, wait, result, report, jobs, cancel", async () => {
    const session = blocks(README).find((b) => b.info === "console" && b.lines.some((l) => l.includes("cloudmill dev")))!;
    expect(session).toBeDefined();
    const env = childEnv({ CLOUDMILL_ENDPOINT: cloud.endpoint });
    let lastJob = "";
    /** Chunks of the job last submitted, and of the job `submit --wait` ran. */
    let lastChunks = 0;
    let waitedChunks = 0;
    let resume: (() => void) | undefined;
    const submitted: string[] = [];
    const steps: string[] = [];
    /** The cloudmill command of the session's next `$` line after line i. */
    const commandAfter = (i: number): string | undefined =>
      shellWords(session.lines.find((l, j) => j > i && l.startsWith("$ "))?.slice(2) ?? "")[2];
    try {
      for (const [i, line] of session.lines.entries()) {
        if (!line.startsWith("$ ")) continue;
        const argv = shellWords(line.slice(2));
        if (argv[0] === "export") {
          expect(argv[1]).toBe("CLOUDMILL_ENDPOINT=http://127.0.0.1:4566");
          continue;
        }
        expect(argv.slice(0, 2)).toEqual(["npx", "cloudmill"]);
        if (argv[2] === "dev") {
          // The test's own dev cloud stands in for it, started with the same flags.
          expect(argv.slice(3)).toEqual(["--inline-max-bytes", "0", "&"]);
          continue;
        }
        const args = argv.slice(2).map((a) => a.replace(JOB_ID, lastJob));
        const shown = session.lines.slice(i + 1, session.lines.findIndex((l, j) => j > i && l.startsWith("$ ")) >>> 0);
        // The job the session cancels must not be able to end first: no worker runs until it is cancelled.
        const toCancel = args[0] === "submit" && commandAfter(i) === "cancel";
        if (toCancel) resume = await pauseWorkers();
        const r = await runProcess(process.execPath, [BIN, ...args], { cwd, env });
        expect(r.code, `${line}\n${r.stderr}`).toBe(0);
        const command = args[0]!;
        steps.push(command);
        switch (command) {
          case "submit":
            if (args.includes("--wait")) {
              const json = shown.slice(shown.findIndex((l) => l.startsWith("{")));
              expect(JSON.parse(r.stdout)).toEqual(JSON.parse(json.join("\n")));
              await expectCommandMatchesReference(args, JSON.parse(r.stdout));
              expect(r.stderr).toMatch(/^uploading examples\/words\.txt → s3:\/\/cloudmill-input\/_uploads\/job-\S+\/words\.txt/);
              waitedChunks = await chunksOfCommand(args);
              expect(r.stderr).toMatch(new RegExp(`\\[#+\\] ${waitedChunks}/${waitedChunks} chunks {2}100% {2}succeeded`));
              expect(shown.join("\n")).toContain(`${waitedChunks}/${waitedChunks} chunks  100%  succeeded`);
            } else {
              expect(r.stdout).toMatch(/^job-\d{8}T\d{6}-[0-9a-f]{16}\n$/);
              lastJob = r.stdout.trim();
              lastChunks = await chunksOfCommand(args);
              submitted.push(lastJob);
              // Cancelled once the splitter has queued every task (so the cancel knows the job's chunks).
              if (toCancel) await allQueued(lastJob);
            }
            break;
          case "status":
            expect(r.stdout).toMatch(
              new RegExp(`^${lastJob} {2}(running|succeeded) {2}\\d+/${lastChunks} chunks \\(\\d+%\\) {2}stats {2}started `),
            );
            break;
          case "wait":
            expect(JSON.parse(r.stdout)).toEqual(JSON.parse(shown.slice(shown.findIndex((l) => l.startsWith("{"))).join("\n")));
            expectMatchesReference("stats", {}, await exampleBytes("numbers.txt"), JSON.parse(r.stdout));
            expect(r.stderr).toContain(`${lastJob} [##############################] ${lastChunks}/${lastChunks} chunks  100%  succeeded`);
            expect(shown.join("\n")).toContain(`${lastChunks}/${lastChunks} chunks  100%  succeeded`);
            break;
          case "result":
            expect(r.stdout).toBe("");
            expectMatchesReference(
              "stats",
              {},
              await exampleBytes("numbers.txt"),
              JSON.parse(await readFile(path.join(cwd, "stats.json"), "utf8")),
            );
            break;
          case "report": {
            const line = (job: string) =>
              new RegExp(
                `^job ${job}: ${lastChunks} tasks on [12] worker\\(s\\) in \\d+\\.\\d s; ` +
                  "(no stragglers|\\d+ straggler\\(s\\), .*); task-time cost \\$\\d+\\.\\d{6} \\(m7g\\.large on-demand list prices of \\d{4}-\\d{2}\\)$",
              );
            expect(shown[0]).toMatch(line("job-\\S+"));
            expect(r.stdout.split("\n")[0]).toMatch(line(lastJob));
            expect(r.stdout).toContain("\nwrote report.html\n");
            expect(await readFile(path.join(cwd, "report.html"), "utf8")).toMatch(/^<!doctype html>/);
            break;
          }
          case "jobs":
            expect(r.stdout.split("\n")[0]).toBe(shown[0]);
            expect(r.stdout).toMatch(new RegExp(`\\n${submitted[0]}  succeeded  ${lastChunks}/${lastChunks} +stats `));
            expect(r.stdout).toMatch(new RegExp(` succeeded {2}${waitedChunks}/${waitedChunks} +wordcount .*words\\.txt\\n`));
            break;
          case "cancel":
            // The README shows the same job; its count of chunks done depends on the run, its total does not.
            expect(shown[0]).toMatch(new RegExp(`^job job-\\S+ cancelled \\(\\d+ of ${lastChunks} chunks were done\\)$`));
            expect(r.stdout).toBe(`job ${lastJob} cancelled (0 of ${lastChunks} chunks were done)\n`);
            expect(await statusOf(lastJob)).toMatchObject({ state: "cancelled", done: 0, chunks: lastChunks });
            await expectCancelledAndSkipped(lastJob, lastChunks, resume!);
            break;
          default:
            throw new Error(`the README's session runs a command this test does not check: ${line}`);
        }
      }
    } finally {
      resume?.();
    }
    expect(steps).toEqual(["submit", "submit", "status", "wait", "result", "report", "jobs", "submit", "cancel"]);
  }, 180_000);

  it("examples/sdk.ts runs against cloudmill dev", async () => {
    const [words, events, numbers] = await Promise.all(["words.txt", "events.jsonl", "numbers.txt"].map(exampleBytes));
    // Part 3's job: wordcount of events.jsonl in the example's chunk size.
    const longChunkSize = /mill\.submit\(\{ op: "wordcount", inputs: \["examples\/events\.jsonl"\], chunkSize: "(\w+)" \}\)/.exec(
      await readFile(path.join(ROOT, "examples/sdk.ts"), "utf8"),
    )?.[1];
    expect(longChunkSize).toBeDefined();
    const longChunks = chunksOf(events!.length, bytesOf(longChunkSize!));
    const cancelledBefore = new Set(await cancelledJobs());
    const child = spawnChild(path.join(ROOT, "node_modules/.bin/tsx"), ["examples/sdk.ts", "--endpoint", cloud.endpoint], {
      cwd: ROOT,
      env: childEnv(),
    });
    let resume: (() => void) | undefined;
    try {
      // Part 3's job must not be able to end before it is cancelled: the workers stop as soon as
      // part 2's three jobs have ended, which the example prints before it submits part 3's job.
      await child.waitForLine(() => child.stdout.filter((l) => l.includes(" ended: ")).length === 3, 120_000);
      resume = await pauseWorkers();
      const { code } = await child.exited;
      expect(code, child.stderr.join("\n")).toBe(0);
      const lines = child.stdout;
      expect(lines[0]).toBe(
        `most frequent words: ${JSON.stringify(refWordcount(words!, 3).top)} | words in the events: ${refWordcount(events!).total}`,
      );
      // The three jobs end in any order; each line is "<job id> ended: <result>".
      const ended = lines.slice(1, 4).map((l) => {
        expect(l).toMatch(/^job-\d{8}T\d{6}-[0-9a-f]{16} ended: /);
        return JSON.parse(l.slice(l.indexOf(" ended: ") + 8)) as Record<string, unknown>;
      });
      const asJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v));
      expect(ended.find((e) => "variance" in e)).toStrictEqual(asJson(refStats(numbers!)));
      expect(ended.find((e) => "matches" in e)).toStrictEqual(asJson(refGrep(events!, '"ok": false', 1)));
      // count with format: "lines": every line of the .jsonl file, as the reference counts lines.
      expect(ended.find((e) => "records" in e)).toStrictEqual(refCount(events!));
      // Nothing done: before the splitter ran (pending) or after (running, all chunks known).
      expect([
        "progress: { state: 'pending', done: 0, total: 0, fraction: 0 }",
        `progress: { state: 'running', done: 0, total: ${longChunks}, fraction: 0 }`,
      ]).toContain(lines[4]);
      expect(lines[5]).toBe("not done after 1 s; cancelling: cancelled");
      expect(lines).toHaveLength(6);
      const longJobs = (await cancelledJobs()).filter((id) => !cancelledBefore.has(id));
      expect(longJobs).toHaveLength(1);
      await expectCancelledAndSkipped(longJobs[0]!, longChunks, resume);
    } finally {
      resume?.();
      child.child.kill();
    }
  }, 180_000);
});

describe("asking for the end of a job that has not ended", () => {
  const cli = (...args: string[]) => runProcess(process.execPath, [BIN, ...args, "--endpoint", cloud.endpoint], { cwd, env: childEnv() });

  it("result and wait --timeout exit 75 (NOT_FINISHED), not a failed job's code; the job goes on and ends", async () => {
    const resume = await pauseWorkers();
    try {
      const submitted = await cli("submit", "examples/words.txt", "--op", "count", "--no-progress");
      expect(submitted.code, submitted.stderr).toBe(0);
      const jobId = submitted.stdout.trim();
      const result = await cli("result", jobId);
      expect(result.code).toBe(75);
      expect(result.stderr).toMatch(
        new RegExp(`job ${jobId} is (pending|running) \\(\\d+/\\d+ chunks\\): \`cloudmill wait ${jobId}\` waits for it`),
      );
      const waited = await cli("wait", jobId, "--timeout", "1", "--no-progress");
      expect(waited.code).toBe(75);
      expect(waited.stderr).toMatch(/had not ended after 1s .*it goes on/);
      resume();
      const ended = await cli("wait", jobId, "--no-progress");
      expect(ended.code, ended.stderr).toBe(0);
      expect(JSON.parse(ended.stdout)).toEqual(refCount(await readFile(path.join(cwd, "examples/words.txt"))));
    } finally {
      resume();
    }
  }, 120_000);
});

describe("cloudmill submit when not every job can start", () => {
  const submit = (...args: string[]) =>
    runProcess(process.execPath, [BIN, "submit", ...args, "--endpoint", cloud.endpoint, "--no-progress"], { cwd, env: childEnv() });

  it("--each prints the ids of the jobs that started, then fails on the input that could not", async () => {
    const r = await submit("no-such-file.txt", "examples/words.txt", "--op", "count", "--each");
    expect(r.code).toBe(3);
    const ids = r.stdout.trim().split("\n");
    expect(ids).toHaveLength(1);
    expect(ids[0]).toMatch(new RegExp(`^${JOB_ID.source}$`));
    expect(r.stderr).toContain("1 of 2 jobs submitted (their ids above); the first that was not:");
    expect(r.stderr).toContain("no-such-file.txt: no such file or directory");
    await vi.waitFor(async () => expect((await statusOf(ids[0]!))["state"]).toBe("succeeded"), { timeout: 60_000, interval: 200 });
  }, 120_000);

  it("--partitions sets a keyed job's parts in the cloud too, each key counted as sort | uniq -c counts it", async () => {
    const r = await submit("examples/words.txt", "--op", "distinct", "--partitions", "3", "--wait");
    expect(r.code, r.stderr).toBe(0);
    const manifest = JSON.parse(r.stdout) as { partitions: number; parts: { key: string }[] };
    expect(manifest.partitions).toBe(3);
    expect(manifest.parts).toHaveLength(3);
    const counts = new Map<string, number>();
    for (const part of manifest.parts) {
      const { bucket, key } = parseS3Uri(part.key);
      const body = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      for (const line of (await body.Body!.transformToString()).split("\n").filter(Boolean)) {
        const row = JSON.parse(line) as { key: string; count: number };
        counts.set(row.key, row.count);
      }
    }
    const expected = execFileSync("sh", ["-c", "LC_ALL=C sort examples/words.txt | uniq -c"], { cwd, encoding: "utf8" })
      .split("\n")
      .filter(Boolean)
      .map((l) => /^\s*(\d+) (.*)$/.exec(l)!)
      .map((m) => [m[2]!, Number(m[1])] as const);
    expect(counts).toEqual(new Map(expected));
  }, 120_000);

  it("--wait says how many bad records a job skipped, as run does (the result alone does not show it)", async () => {
    const lines = Array.from({ length: 400 }, (_, i) => (i % 10 === 3 ? `x${i}` : String(i)));
    await writeFile(path.join(cwd, "skips.txt"), `${lines.join("\n")}\n`);
    const bad = execFileSync("sh", ["-c", "grep -cv '^[0-9]*$' skips.txt"], { cwd, encoding: "utf8" }).trim();
    const r = await submit("skips.txt", "--op", "stats", "--skip-bad-records", "--chunk-size", "500", "--wait");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`: skipped ${bad} bad record\\(s\\)`));
  }, 120_000);

  it("a folder's hidden files are not uploaded, and the user is told in one line; the job counts the rest", async () => {
    const folder = path.join(cwd, "with-hidden");
    await mkdir(path.join(folder, ".git"), { recursive: true });
    await writeFile(path.join(folder, "a.txt"), "one\ntwo\nthree\n");
    await writeFile(path.join(folder, ".DS_Store"), "\u0000\u0001junk\n");
    await writeFile(path.join(folder, ".git", "HEAD"), "ref: refs/heads/main\n");
    const r = await submit("with-hidden", "--op", "count", "--wait");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      records: Number(execFileSync("awk", ["END{print NR}", path.join(folder, "a.txt")], { encoding: "utf8" })),
    });
    expect(r.stderr).toMatch(/^cloudmill: warning: left out 2 hidden file\(s\) or folder\(s\) \(.*\.DS_Store, .*\.git\): /m);
  }, 120_000);

  it("--fan-in and --backup-after reach the job's spec; a fan-in below 2 is refused before anything is uploaded", async () => {
    const r = await submit("examples/words.txt", "--op", "count", "--fan-in", "2", "--backup-after", "0");
    expect(r.code, r.stderr).toBe(0);
    const jobId = r.stdout.trim();
    const body = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: cloud.inputBucket, Key: `_jobs/${jobId}.json` }));
    expect(JSON.parse(await body.Body!.transformToString())).toMatchObject({ fanIn: 2, backupAfterSeconds: 0 });
    await vi.waitFor(async () => expect((await statusOf(jobId))["state"]).toBe("succeeded"), { timeout: 60_000, interval: 200 });
    const refused = await submit("examples/words.txt", "--op", "count", "--fan-in", "1");
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/fanIn/);
    expect(refused.stdout).toBe("");
  }, 120_000);

  it("refuses flags of a job over inputs with --items, rather than drop them", async () => {
    await writeFile(path.join(cwd, "items.jsonl"), '{"x":1}\n');
    const r = await submit("--items", "items.jsonl", "--op", "simulate", "--prefer", "cheapest", "--each");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--each, --prefer: not with --items/);
  });

  it("Ctrl-C while it uploads stops the uploads and starts no job", async () => {
    const big = path.join(cwd, "big.txt");
    await writeFile(big, Buffer.alloc(200 * 1024 * 1024, "lorem ipsum\n"));
    const child = spawnChild(process.execPath, [BIN, "submit", big, "--op", "count", "--endpoint", cloud.endpoint], {
      cwd,
      env: childEnv(),
    });
    try {
      // Its first upload progress line: the upload has begun.
      await vi.waitFor(() => expect(child.stderr.some((l) => l.startsWith("uploading "))).toBe(true), { timeout: 30_000, interval: 20 });
      const jobId = new RegExp(JOB_ID.source).exec(child.stderr.join("\n"))![0];
      child.child.kill("SIGINT");
      expect(await child.exited).toEqual({ code: 130, signal: null });
      expect(child.stderr.at(-1)).toBe("cloudmill: stopped");
      expect(child.stdout).toEqual([]);
      const spec = await cloud.clients.s3.send(new HeadObjectCommand({ Bucket: cloud.inputBucket, Key: `_jobs/${jobId}.json` })).then(
        () => true,
        () => false,
      );
      expect(spec).toBe(false);
    } finally {
      child.child.kill();
      await rm(big, { force: true });
    }
  }, 120_000);
});
