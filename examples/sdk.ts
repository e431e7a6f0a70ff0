/**
 * The cloudmill SDK in a script (or a notebook cell).
 *
 *   npx cloudmill dev &                                          # an emulated AWS on 127.0.0.1:4566
 *   npx tsx examples/sdk.ts --endpoint http://127.0.0.1:4566
 *   npx tsx examples/sdk.ts --stack Cloudmill-mylab              # your lab's AWS (default credentials and region)
 */
import { parseArgs } from "node:util";
import { asCompleted, Cloudmill, CloudmillError, waitAll } from "cloudmill/sdk";

const { values } = parseArgs({ options: { stack: { type: "string" }, endpoint: { type: "string" } } });

// Connect: by stack name (reads its outputs), or to `cloudmill dev` by endpoint. Fails here if the
// stack or the credentials are wrong, with one line saying what to do.
const mill = await Cloudmill.connect(values.stack ? { stack: values.stack } : { endpoint: values.endpoint ?? "http://127.0.0.1:4566" });

// 1. One job per input, like Cloudknot's Knot.map: local files are uploaded, s3:// URIs used in place.
const [words, events] = await waitAll(mill.map("wordcount", ["examples/words.txt", "examples/events.jsonl"], { k: 3 }));
console.log("most frequent words:", JSON.stringify(words.top), "| words in the events:", events.total);

// 2. Different jobs, taken as they finish.
const jobs = [
  mill.submit({ op: "stats", inputs: ["examples/numbers.txt"] }),
  mill.submit({ op: "grep", inputs: ["examples/events.jsonl"], params: { pattern: '"ok": false', k: 1 } }),
  mill.submit({ op: "count", inputs: ["examples/events.jsonl"], format: "lines" }),
];
for await (const job of asCompleted<unknown>(jobs)) {
  console.log(job.id, "ended:", JSON.stringify(await job.result()));
}

// 3. Progress, a timeout, and cancelling a job (its queued chunks are skipped).
const long = mill.submit({ op: "wordcount", inputs: ["examples/events.jsonl"], chunkSize: "4KiB" });
await long.submitted;
console.log("progress:", await long.progress());
try {
  await long.result({ timeoutMs: 1_000 });
} catch (err) {
  if (!(err instanceof CloudmillError && err.code === "NOT_FINISHED")) throw err;
  console.log("not done after 1 s; cancelling:", (await long.cancel()).state);
}

// 4. The worker fleet (ECS on EC2) of a deployed stack.
if (values.stack) {
  const fleet = await mill.fleet();
  console.log(
    `workers: ${fleet.desired} desired, ${fleet.running} running, ${fleet.pending} pending on ${fleet.instances.length} instance(s)`,
  );
  for (const i of fleet.instances)
    console.log(
      `  ${i.instanceId} ${i.type} ${i.market} since ${i.launchTime?.toISOString()}: CPU ${Math.round(i.cpu.fraction * 100)}% reserved`,
    );
}

mill.close();
