/**
 * A prefix of many small objects on the emulated fleet is one job of few tasks: the planner
 * packs them many per task, and each object costs its one GET and almost nothing else. The
 * request figures are counted by the emulated AWS itself, from every client (splitter,
 * workers, reducer); the expected count is computed here from the bytes uploaded.
 */
import { describe, expect, it } from "vitest";
import { mapInOrder } from "../../lib/core/mapInOrder.js";
import { prng } from "../../lib/dev/prng.js";
import { refCount, refWordcount } from "../helpers/reference.js";
import { useDevCloud } from "../helpers/devCloud.js";

const OBJECTS = 10_000;
const cloud = useDevCloud({ workers: 2, workerConcurrency: 2 });

describe("a prefix of many small objects on the emulated fleet", () => {
  it(`${OBJECTS} objects: one job, at most one task per 100 objects, at most 0.1 S3 requests per object beyond its GET`, async () => {
    const rand = prng(5);
    const bodies: Buffer[] = [];
    for (let i = 0; i < OBJECTS; i++) {
      const lines = Array.from(
        { length: 1 + Math.floor(rand() * 6) },
        () => `cell ${Math.floor(rand() * 50)} area ${Math.floor(rand() * 900)}`,
      );
      bodies.push(Buffer.from(`${lines.join("\n")}\n`));
    }
    await mapInOrder(bodies, 32, (body, i) => cloud().put(`_inputs/plate/img-${String(i).padStart(6, "0")}.txt`, body));
    const all = Buffer.concat(bodies);

    const before = cloud().cloud.requests();
    const input = `s3://${cloud().input}/_inputs/plate/`;
    await cloud().put("_jobs/plate-count.json", JSON.stringify({ op: "count", inputs: [input] }));
    const status = await cloud().waitForEnd("_jobs/plate-count/status.json", 300_000);
    const after = cloud().cloud.requests();
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expect(await cloud().getJson(cloud().output, "_jobs/plate-count/result.json")).toEqual(refCount(all));

    expect(status.chunks).toBeLessThanOrEqual(OBJECTS / 100);
    const gets = after.s3Get - before.s3Get;
    const others = after.s3Other - before.s3Other;
    // The spec's own PUT is one of them; every object is read once (a redelivered task may read its objects again).
    expect(gets).toBeGreaterThanOrEqual(OBJECTS);
    expect((gets - OBJECTS + others) / OBJECTS).toBeLessThanOrEqual(0.1);

    // The same objects, wordcount: the reference's over all of them.
    await cloud().put("_jobs/plate-words.json", JSON.stringify({ op: "wordcount", inputs: [input] }));
    const words = await cloud().waitForEnd("_jobs/plate-words/status.json", 300_000);
    expect(words.state, JSON.stringify(words.error)).toBe("succeeded");
    expect(await cloud().getJson(cloud().output, "_jobs/plate-words/result.json")).toEqual(JSON.parse(JSON.stringify(refWordcount(all))));
  }, 600_000);
});
