/**
 * Cloud-path figures, through the emulated cloud and the real AWS SDK:
 *  - the splitter's requests per object, for objects of growing size (must not grow);
 *  - a prefix of many small objects as one job: tasks, and requests per object and per task;
 *  - tasks per second with tiny chunks, against the emulator's own queue throughput
 *    (a bare send + receive + delete loop) measured in the same run.
 */
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { DeleteMessageCommand } from "@aws-sdk/client-sqs";
import { SqsTaskQueue } from "../lib/aws/SqsTaskQueue.js";
import { awsClients, type AwsClients } from "../lib/aws/clients.js";
import { cloudDeps } from "../lib/aws/cloudDeps.js";
import { DEV_BUCKETS } from "../lib/core/constants.js";
import { startDevCloud } from "../lib/dev/devCloud.js";
import { DEFAULTS } from "../lib/core/constants.js";
import { createDevResources, startEmulator } from "../lib/dev/emulator.js";
import { silentLogger } from "../lib/core/log.js";
import { vmRssKiB } from "./chaos.js";
import { handleObjectCreated } from "../lib/core/pipeline/trigger.js";

/** Counts requests per service by a middleware on each client. */
const countRequests = (clients: AwsClients) => {
  const counts = { s3: 0, sqs: 0 };
  clients.s3.middlewareStack.add(
    (next) => (args) => {
      counts.s3 += 1;
      return next(args);
    },
    { step: "finalizeRequest", name: "countS3" },
  );
  clients.sqs.middlewareStack.add(
    (next) => (args) => {
      counts.sqs += 1;
      return next(args);
    },
    { step: "finalizeRequest", name: "countSqs" },
  );
  return counts;
};

export const splitterRequests = async (): Promise<string[]> => {
  const emulator = await startEmulator();
  try {
    const clients = awsClients({ endpoint: emulator.endpoint });
    const res = await createDevResources(clients, { taskQueue: "bench-split", deadLetterQueue: "bench-split-dlq" });
    const counts = countRequests(clients);
    const deps = {
      ...cloudDeps({ outputBucket: DEV_BUCKETS.output }, silentLogger, clients),
      queue: new SqsTaskQueue(clients.sqs, res.taskQueueUrl),
    };
    const rows = ["| object size | chunks (64 KiB) | S3 requests | SQS requests (batches of 10) |", "|---|---|---|---|"];
    for (const size of [1024, 1024 ** 2, 16 * 1024 ** 2, 64 * 1024 ** 2]) {
      const key = `count/bench-${size}.txt`;
      await clients.s3.send(new PutObjectCommand({ Bucket: DEV_BUCKETS.input, Key: key, Body: Buffer.alloc(size, "a\n") }));
      counts.s3 = 0;
      counts.sqs = 0;
      const out = await handleObjectCreated(
        deps,
        { defaultChunkSize: 64 * 1024, maxAttempts: 3, jobDeadlineSeconds: 3600 },
        { bucket: DEV_BUCKETS.input, key },
      );
      const chunks = "chunks" in out ? out.chunks : 0;
      rows.push(`| ${size.toLocaleString("en")} B | ${chunks} | ${counts.s3} | ${counts.sqs} |`);
    }
    clients.s3.destroy();
    clients.sqs.destroy();
    return rows;
  } finally {
    await emulator.stop();
  }
};

/**
 * The queue alone: one loop of send (batches of 10) → receive (10 at a time) → delete (one
 * DeleteMessage each, as the issue measured it), as many messages as the job has chunks.
 */
const queueBaseline = async (clients: AwsClients, url: string, n: number): Promise<number> => {
  const q = new SqsTaskQueue(clients.sqs, url);
  const started = performance.now();
  await q.sendBatch(Array.from({ length: n }, (_, i) => JSON.stringify({ i })));
  let got = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (got < n) {
        const ms = await q.receive({ maxMessages: 10, waitSeconds: 1 });
        got += ms.length;
        await Promise.all(ms.map((m) => clients.sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: m.receiptHandle }))));
      }
    }),
  );
  return n / ((performance.now() - started) / 1000);
};

/** Newlines in `body`: the records the count op must find in it, counted apart from the engine. */
const linesIn = (body: Buffer): number => {
  let n = 0;
  for (let at = body.indexOf(0x0a); at >= 0; at = body.indexOf(0x0a, at + 1)) n++;
  return n;
};

/** The records a count job's result.json holds; a mismatch with `expected` fails the bench (exit 1). */
const checkedRecords = async (clients: AwsClients, bucket: string, key: string, expected: number, what: string): Promise<boolean> => {
  const r = await clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const { records } = JSON.parse(await r.Body!.transformToString()) as { records: number };
  if (records === expected) return true;
  process.stderr.write(`MISMATCH in ${what}: result.json counts ${records} records, the bench wrote ${expected}\n`);
  process.exitCode = 1;
  return false;
};

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU time (user + system, ms) a process has used, from /proc (Linux); undefined elsewhere. */
const cpuMs = (pid: number): number | undefined => {
  try {
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th, in clock ticks (100 a second).
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
};

/** CPU time used so far by the worker processes together, and by this process (emulator, roles, bench). */
const cpuNow = (cloud: { workerPids(): number[] }): { readonly workers: number; readonly host: number } => {
  const { user, system } = process.cpuUsage();
  return { workers: cloud.workerPids().reduce((ms, pid) => ms + (cpuMs(pid) ?? 0), 0), host: (user + system) / 1000 };
};

export const tasksPerSecond = async (chunks: number, workers: number): Promise<string[]> => {
  const cloud = await startDevCloud({
    inlineMaxBytes: 0,
    workers,
    workerConcurrency: 4,
    chunkSize: 1024,
    log: silentLogger,
    visibilitySeconds: 60,
    // The stack's batching: the reducer's requests per task are what a deployed stack's are.
    reducerWindowMs: DEFAULTS.reducerBatchWindowSeconds * 1000,
  });
  try {
    const baselineUrl = (await createDevResources(cloud.clients, { taskQueue: "bench-baseline", deadLetterQueue: "bench-baseline-dlq" }))
      .taskQueueUrl;
    // Right after the start, the worker processes are still loading the SDK and the emulator is
    // cold: this loop runs 3-4x slower than warm, so it is shown, never divided by.
    const cold = await queueBaseline(cloud.clients, baselineUrl, chunks);
    const line = "x".repeat(63) + "\n";
    const body = Buffer.from(line.repeat((chunks * 1024) / line.length));
    const expected = linesIn(body);
    const key = "count/tiny-chunks.txt";
    // Let the worker processes start (they load the SDK) before either clock starts; the job is
    // bracketed by a warm loop on each side, so a slow spell of the host falls on both.
    await settle(3000);
    const warmBefore = await queueBaseline(cloud.clients, baselineUrl, chunks);
    const before = cloud.requests();
    const actionsBefore = cloud.requestActions();
    const cpuBefore = cpuNow(cloud);
    const started = performance.now();
    await cloud.clients.s3.send(new PutObjectCommand({ Bucket: cloud.inputBucket, Key: key, Body: body }));
    // This bench's own requests (the upload, its polls of status.json) are no task's: left out below.
    let polls = 0;
    for (;;) {
      await settle(200);
      polls++;
      try {
        const r = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: cloud.outputBucket, Key: `${key}/status.json` }));
        const status = JSON.parse(await r.Body!.transformToString()) as { state: string };
        if (status.state === "succeeded") break;
        if (status.state !== "running") throw new Error(`bench job ${status.state}`);
      } catch (err) {
        if ((err as Error).name !== "NoSuchKey") throw err;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const rate = chunks / seconds;
    const after = cloud.requests();
    const cpuAfter = cpuNow(cloud);
    const actions = Object.entries(cloud.requestActions())
      .map(
        ([action, n]) =>
          [action, n - (actionsBefore[action] ?? 0) - (action === "GetObject" ? polls : action === "PutObject" ? 1 : 0)] as const,
      )
      .filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1]);
    const exact = await checkedRecords(cloud.clients, cloud.outputBucket, `${key}/result.json`, expected, "tasks per second");
    const warmAfter = await queueBaseline(cloud.clients, baselineUrl, chunks);
    const warm = (warmBefore + warmAfter) / 2;
    const perTask = (n: number): string => (n / chunks).toFixed(2);
    return [
      `| chunks | workers × concurrency | job wall time | tasks/s | bare queue loop, warm: before / after the job (msg/s) | tasks/s ÷ warm loop | bare loop cold, at start (msg/s) | S3 GET / other S3 / SQS requests per task | exact |`,
      `|---|---|---|---|---|---|---|---|---|`,
      `| ${chunks} × 1 KiB | ${workers} × 4 | ${seconds.toFixed(1)} s | ${rate.toFixed(0)} | ${warmBefore.toFixed(0)} / ${warmAfter.toFixed(0)} | ` +
        `${(rate / warm).toFixed(2)} | ${cold.toFixed(0)} | ` +
        `${perTask(after.s3Get - before.s3Get - polls)} / ${perTask(after.s3Other - before.s3Other - 1)} / ${perTask(after.sqs - before.sqs)} | ` +
        `${exact ? "yes" : "NO"} |`,
      "",
      "The ratio divides by the mean of the two warm loops (same queue, as many messages as chunks, 3 s after the start, " +
        "like the job). The cold loop ran first, while the worker processes started. Requests counted by the emulator over " +
        "every client (splitter, workers, reducer; not this benchmark's upload and its status polls every 0.2 s). " +
        `exact: result.json counts the ${expected.toLocaleString("en")} lines the bench wrote.`,
      "",
      `CPU per task: ${((cpuAfter.workers - cpuBefore.workers) / chunks).toFixed(1)} ms in the worker processes, ` +
        `${((cpuAfter.host - cpuBefore.host) / chunks).toFixed(1)} ms in this one (the emulator, splitter, reducer, the bench's polls).`,
      "",
      "| requests per task, by action | " + actions.map(([action]) => action).join(" | ") + " | all |",
      "|---|" + actions.map(() => "---|").join("") + "---|",
      "| | " + actions.map(([, n]) => perTask(n)).join(" | ") + ` | ${perTask(actions.reduce((sum, [, n]) => sum + n, 0))} |`,
    ];
  } finally {
    await cloud.stop();
  }
};

/**
 * A prefix of `n` small objects (about 1 KB each) as one count job: the requests the emulated
 * AWS served from the spec's upload to the job's end, counted by the emulator itself.
 */
export const manyObjects = async (n: number, workers: number): Promise<string[]> => {
  const cloud = await startDevCloud({ inlineMaxBytes: 0, workers, workerConcurrency: 2, log: silentLogger });
  try {
    const line = "cell 17 area 512 intensity 0.25\n";
    const body = Buffer.from(line.repeat(32));
    const expected = n * linesIn(body);
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < n) {
          const i = next++;
          const Key = `_inputs/many/obj-${String(i).padStart(7, "0")}.txt`;
          await cloud.clients.s3.send(new PutObjectCommand({ Bucket: cloud.inputBucket, Key, Body: body }));
        }
      }),
    );
    const before = cloud.requests();
    const started = performance.now();
    const spec = JSON.stringify({ op: "count", inputs: [`s3://${cloud.inputBucket}/_inputs/many/`] });
    await cloud.clients.s3.send(new PutObjectCommand({ Bucket: cloud.inputBucket, Key: "_jobs/many.json", Body: spec }));
    let status: { state: string; chunks: number };
    for (;;) {
      await new Promise((r) => setTimeout(r, 500));
      try {
        const r = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: cloud.outputBucket, Key: "_jobs/many/status.json" }));
        status = JSON.parse(await r.Body!.transformToString()) as { state: string; chunks: number };
        if (status.state === "succeeded") break;
        if (status.state !== "running") throw new Error(`bench job ${status.state}`);
      } catch (err) {
        if ((err as Error).name !== "NoSuchKey") throw err;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const after = cloud.requests();
    const exact = await checkedRecords(cloud.clients, cloud.outputBucket, "_jobs/many/result.json", expected, "many small objects");
    const gets = after.s3Get - before.s3Get;
    const other = after.s3Other - before.s3Other;
    const tasks = status.chunks;
    return [
      "| objects | tasks | objects per task | job wall time | objects/s | S3 GETs per object | other S3 requests per object | S3 requests per task beyond one GET per object | exact |",
      "|---|---|---|---|---|---|---|---|---|",
      `| ${n.toLocaleString("en")} | ${tasks} | ${(n / tasks).toFixed(0)} | ${seconds.toFixed(1)} s | ${(n / seconds).toFixed(0)} | ` +
        `${(gets / n).toFixed(3)} | ${(other / n).toFixed(4)} | ${((gets - n + other) / tasks).toFixed(1)} | ${exact ? "yes" : "NO"} |`,
      "",
      `${workers} worker processes × 2 tasks at once. Requests counted by the emulated S3 itself over every client ` +
        "(splitter, workers, reducer, status polls of this benchmark), from the spec's upload to the job's end; " +
        "the poll of status.json every 0.5 s is among the GETs. " +
        `exact: result.json counts the ${expected.toLocaleString("en")} lines the bench wrote (${n.toLocaleString("en")} objects × ${linesIn(body)}).`,
    ];
  } finally {
    await cloud.stop();
  }
};

/**
 * A wordcount-like keyed job at the size where one reducer would have held everything: `distinct`
 * over `keys` distinct tokens in about `chunks` tasks on the emulated fleet. Workers' peak RSS
 * is sampled from /proc; the host's heap holds the emulator's S3 (all data, in memory) and the
 * reducer's merge of the map stage. The result is checked: every key once, every line counted.
 */
export const keyedAtScale = async (chunks: number, keys: number, workers: number): Promise<string[]> => {
  const lines = keys * 2;
  const text = Buffer.from(Array.from({ length: lines }, (_, i) => `k${String((i * 7919) % keys).padStart(7, "0")}\n`).join(""));
  const chunkSize = Math.ceil(text.length / chunks);
  const partitions = 8;
  const cloud = await startDevCloud({ inlineMaxBytes: 0, workers, workerConcurrency: 2, log: silentLogger, chunkSize });
  const peaks = new Map<number, number>();
  let hostHeap = 0;
  const sampler = setInterval(() => {
    for (const pid of cloud.workerPids()) {
      const kib = vmRssKiB(pid);
      if (kib !== undefined) peaks.set(pid, Math.max(peaks.get(pid) ?? 0, kib));
    }
    hostHeap = Math.max(hostHeap, process.memoryUsage().heapUsed);
  }, 200);
  try {
    await cloud.clients.s3.send(new PutObjectCommand({ Bucket: cloud.inputBucket, Key: "_inputs/tokens.txt", Body: text }));
    const started = performance.now();
    const spec = JSON.stringify({ op: "distinct", inputs: [`s3://${cloud.inputBucket}/_inputs/tokens.txt`], partitions });
    await cloud.clients.s3.send(new PutObjectCommand({ Bucket: cloud.inputBucket, Key: "_jobs/keyed-scale.json", Body: spec }));
    const read = async (key: string): Promise<string | undefined> => {
      try {
        const r = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: cloud.outputBucket, Key: key }));
        return await r.Body!.transformToString();
      } catch (err) {
        if ((err as Error).name === "NoSuchKey") return undefined;
        throw err;
      }
    };
    let status: { state: string; chunks: number };
    for (;;) {
      await new Promise((r) => setTimeout(r, 1000));
      const body = await read("_jobs/keyed-scale/status.json");
      if (!body) continue;
      status = JSON.parse(body) as { state: string; chunks: number };
      if (status.state === "succeeded") break;
      if (status.state !== "running") throw new Error(`bench job ${status.state}: ${body}`);
    }
    const seconds = (performance.now() - started) / 1000;
    const result = JSON.parse((await read("_jobs/keyed-scale/result.json"))!) as { records: number; parts: { key: string }[] };
    let counted = 0;
    for (const part of result.parts) {
      for (const line of (await read(part.key.replace(`s3://${cloud.outputBucket}/`, "")))!.split("\n")) {
        if (line !== "") counted += (JSON.parse(line) as { count: number }).count;
      }
    }
    const exact = result.records === keys && counted === lines;
    if (!exact) process.exitCode = 1;
    const workerPeak = Math.max(...peaks.values()) / 1024;
    return [
      "| lines | distinct keys | map tasks | reduce tasks | job wall time | peak RSS of any worker process | host heap peak (emulator + roles) | exact |",
      "|---|---|---|---|---|---|---|---|",
      `| ${lines.toLocaleString("en")} | ${keys.toLocaleString("en")} | ${status.chunks - partitions} | ${partitions} | ${seconds.toFixed(1)} s | ` +
        `${workerPeak.toFixed(0)} MB | ${(hostHeap / 1024 / 1024).toFixed(0)} MB | ${exact ? "yes" : "NO"} |`,
      "",
      `${workers} worker processes × 2 tasks at once, ${chunkSize} B chunks. The reducer merges ${status.chunks - partitions} parts of ` +
        `shuffle references, not ${keys.toLocaleString("en")} keys; each reduce task holds one partition's keys (a spill past 64 MiB).`,
    ];
  } finally {
    clearInterval(sampler);
    await cloud.stop();
  }
};

// `node dist/bench/cloud.js`: the many-small-objects figure alone, or with BENCH_FIGURE=tasks the
// tasks/s figure (npm run bench runs every cloud figure).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const workers = Number(process.env.BENCH_WORKERS ?? 2);
  const rows =
    process.env.BENCH_FIGURE === "tasks"
      ? await tasksPerSecond(Number(process.env.BENCH_CHUNKS ?? 2000), workers)
      : await manyObjects(Number(process.env.BENCH_OBJECTS ?? 100_000), workers);
  process.stdout.write(`${rows.join("\n")}\n`);
}

/**
 * Time to first result: upload to result in `cloudmill dev` (its defaults: small jobs mapped by
 * the splitter, bigger ones on worker processes), against `cloudmill run` on the same file in
 * the same run. The answer is checked against `LC_ALL=C.UTF-8 wc -w` (wordcount's total).
 */
export const uploadToResult = async (files: readonly { readonly file: string; readonly label: string }[], workers: number) => {
  const { execFileSync } = await import("node:child_process");
  const { readFile } = await import("node:fs/promises");
  const bin = new URL("../../bin/cloudmill.js", import.meta.url).pathname;
  const cloud = await startDevCloud({ workers, workerConcurrency: 1, log: silentLogger });
  const rows = [
    "| file | ran on | upload → result, `cloudmill dev` | `cloudmill run` | ratio | exact (vs `wc -w`) |",
    "|---|---|---|---|---|---|",
  ];
  try {
    for (const [i, { file, label }] of files.entries()) {
      const words = Number(
        execFileSync("wc", ["-w"], { input: await readFile(file), env: { LC_ALL: "C.UTF-8" }, encoding: "utf8" }).trim(),
      );
      const runStarted = performance.now();
      const local = JSON.parse(execFileSync(process.execPath, [bin, "run", file, "--op", "wordcount"], { encoding: "utf8" })) as {
        total: number;
      };
      const runMs = performance.now() - runStarted;
      const key = `wordcount/first-result/${i}-${label}.txt`;
      await cloud.clients.s3.send(new PutObjectCommand({ Bucket: cloud.inputBucket, Key: key, Body: await readFile(file) }));
      const uploaded = performance.now();
      let status: { state: string; ranOn?: string };
      for (;;) {
        try {
          const r = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: cloud.outputBucket, Key: `${key}/status.json` }));
          status = JSON.parse(await r.Body!.transformToString()) as { state: string; ranOn?: string };
          if (status.state !== "running") break;
        } catch (err) {
          if ((err as Error).name !== "NoSuchKey") throw err;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      const devMs = performance.now() - uploaded;
      const result = JSON.parse(
        await (
          await cloud.clients.s3.send(new GetObjectCommand({ Bucket: cloud.outputBucket, Key: `${key}/result.json` }))
        ).Body!.transformToString(),
      ) as { total: number };
      const exact = status.state === "succeeded" && result.total === words && local.total === words;
      if (!exact) process.exitCode = 1;
      rows.push(
        `| ${label} | ${status.ranOn ?? status.state} | ${(devMs / 1000).toFixed(2)} s | ${(runMs / 1000).toFixed(2)} s | ` +
          `${(devMs / runMs).toFixed(2)}× | ${exact ? "yes" : "NO"} |`,
      );
    }
    rows.push(
      "",
      `From the upload's end to status.json saying succeeded (polled every 50 ms); ${workers} worker processes already running. ` +
        "`cloudmill run` is the whole command, node's start included.",
    );
    return rows;
  } finally {
    await cloud.stop();
  }
};

/** The first lines of `file`, about `bytes` of them (cut after a newline), as a file beside it. */
export const headOf = async (file: string, bytes: number): Promise<string> => {
  const { readFile, writeFile } = await import("node:fs/promises");
  const out = file.replace(/\.txt$/, `-head-${bytes}.txt`);
  const text = await readFile(file);
  await writeFile(out, text.subarray(0, text.indexOf(0x0a, bytes) + 1));
  return out;
};
