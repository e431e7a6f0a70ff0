/**
 * A prefix too long to list in one splitter invocation, on the emulated cloud: the splitter
 * keeps back all its time (listingReserveMs past its timeout), so each invocation lists one
 * piece of 500 keys, stores it and hands the rest on through its continuation queue, each
 * continuation sent twice (the copy past deduplication, so the FIFO queue's one message a job at
 * a time is what keeps the copies apart). The job's answer is the count computed here from the bytes
 * written; its tasks are queued once (the queue holds exactly its chunks before any worker runs),
 * and a late copy of a continuation changes nothing.
 */
import { GetQueueUrlCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { describe, expect, it } from "vitest";
import { mapInOrder } from "../../lib/core/mapInOrder.js";
import type { JobStatus } from "../../lib/core/job/manifest.js";
import { listingPieceKey } from "../../lib/core/keys.js";
import { DEV_QUEUES } from "../../lib/core/constants.js";
import { queueDepth, useDevCloud, waitFor } from "../helpers/devCloud.js";

const OBJECTS = 3000;
const PER_PIECE = 500;
const cloud = useDevCloud({
  workers: 0,
  maxWorkers: 0,
  inputsPerPiece: PER_PIECE,
  // Every invocation is out of time once it has listed a piece.
  listingReserveMs: 10 * 60_000,
  continuationCopies: 2,
});

describe("a prefix listed across splitter invocations", () => {
  it(`${OBJECTS} objects in pieces of ${PER_PIECE}, one piece per invocation: every line counted once, every task queued once`, async () => {
    const lines = Array.from({ length: OBJECTS }, (_, i) => 1 + (i % 4));
    await mapInOrder(lines, 32, (n, i) => cloud().put(`_inputs/many/obj-${String(i).padStart(5, "0")}.txt`, "row\n".repeat(n)));
    // Left out of the listing, and counted.
    await cloud().put("_inputs/many/zz/_SUCCESS", "");
    const expected = lines.reduce((a, b) => a + b, 0);

    await cloud().put("_jobs/many-count.json", JSON.stringify({ op: "count", inputs: [`s3://${cloud().input}/_inputs/many/`] }));
    // While it lists, its status says how far it got.
    const listing = await waitFor("the job's status while it lists", async () => {
      const status = (await cloud()
        .getJson(cloud().output, "_jobs/many-count/status.json")
        .catch(() => undefined)) as JobStatus | undefined;
      return status?.listing ? status : undefined;
    });
    expect(listing).toMatchObject({ state: "running", chunks: 0, done: 0, op: "count" });
    expect(listing.listing!.objects % PER_PIECE).toBe(0);

    // The plan: once listed, its tasks wait on the queue for a fleet.
    const manifest = await waitFor(
      "the job's manifest",
      () =>
        cloud()
          .getJson(cloud().output, "_work/many-count/manifest.json")
          .catch(() => undefined) as Promise<{ chunks: number } | undefined>,
      120_000,
    );
    // Each piece was stored by an invocation that handed the rest on.
    const pieces = await cloud().keys(cloud().output, "_work/many-count/listing/");
    expect(pieces).toContain(listingPieceKey("many-count", OBJECTS / PER_PIECE));
    expect(pieces.filter((k) => /\/\d+\.json$/.test(k))).toHaveLength(OBJECTS / PER_PIECE);
    const queued = await waitFor("every task queued", async () => {
      const depth = await cloud().taskDepth();
      return (await cloud().get(cloud().output, "_work/many-count/enqueued.json")) ? depth : undefined;
    });
    expect(queued.visible + queued.inFlight + queued.delayed).toBe(manifest.chunks);

    // A late copy of a continuation: the job is planned, so nothing more is listed or queued.
    const { QueueUrl } = await cloud().sqs.send(new GetQueueUrlCommand({ QueueName: DEV_QUEUES.continuations }));
    const late = {
      Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: cloud().input }, object: { key: "_jobs/many-count.json" } } }],
      cloudmillListing: { jobId: "many-count", seq: 2 },
    };
    // In the job's message group, under an id of its own: as a copy sent past SQS's 5-minute deduplication window arrives.
    await cloud().sqs.send(
      new SendMessageCommand({
        QueueUrl,
        MessageBody: JSON.stringify(late),
        MessageGroupId: "many-count",
        MessageDeduplicationId: "late-copy",
      }),
    );
    await waitFor("the late copy handled", async () => {
      const d = await queueDepth(cloud().sqs, QueueUrl!);
      return d.visible + d.inFlight + d.delayed === 0 ? true : undefined;
    });
    const after = await cloud().taskDepth();
    expect(after.visible + after.inFlight + after.delayed).toBe(manifest.chunks);

    cloud().cloud.startWorkers(2);
    const status = await cloud().waitForEnd("_jobs/many-count/status.json", 300_000);
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expect(status.listing).toBeUndefined();
    expect(status.inputCount).toBe(OBJECTS);
    expect(status.hidden?.count).toBe(1);
    expect(await cloud().getJson(cloud().output, "_jobs/many-count/result.json")).toEqual({ records: expected });
    expect((await cloud().taskDepth()).visible).toBe(0);
  }, 600_000);
});
