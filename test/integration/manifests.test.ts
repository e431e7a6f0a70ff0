/**
 * Manifest inputs on the emulated cloud: a job over `manifest:s3://…` reads exactly the objects
 * the manifest lists (a plain list, an S3 Batch Operations CSV, an S3 Inventory report), and
 * its count equals the lines this test wrote into those objects. An inventory's ETag pins the
 * object it describes, and a listed object that is not there fails the job naming the line.
 */
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestCloud, type TestCloud } from "../helpers/devCloud.js";

let cloud: TestCloud;
/** Each object's key and how many lines it holds. */
const objects = new Map<string, number>();

const KEYS = ["data/log-0.txt", "data/log-1.txt", "data/site a/log 2.txt", "data/site a/log 3.txt", "data/x+y.txt", "data/other.txt"];

beforeAll(async () => {
  cloud = await startTestCloud({ chunkSize: 4096 });
  for (const [i, key] of KEYS.entries()) {
    const n = 40 + i * 17;
    objects.set(key, n);
    await cloud.put(key, Array.from({ length: n }, (_, j) => `${key} line ${j}\n`).join(""));
  }
}, 90_000);

afterAll(async () => {
  await cloud?.stop();
}, 60_000);

const linesOf = (...keys: string[]): number => keys.reduce((sum, k) => sum + objects.get(k)!, 0);

/** Submits a count over `inputs` as job `id`; resolves to its final status and result. */
const count = async (id: string, inputs: string[]) => {
  await cloud.put(`_jobs/${id}.json`, JSON.stringify({ op: "count", inputs }));
  const status = await cloud.waitForEnd(`_jobs/${id}/status.json`);
  const result = status.state === "succeeded" ? await cloud.getJson(cloud.output, `_jobs/${id}/result.json`) : undefined;
  return { status, result };
};

const etagOf = async (key: string): Promise<string> =>
  (await cloud.s3.send(new HeadObjectCommand({ Bucket: cloud.input, Key: key }))).ETag!.replaceAll('"', "");

/** S3 Inventory's CSV key encoding: form-encoded, `+` for a space. */
const inventoryKey = (key: string): string => encodeURIComponent(key).replaceAll("%2F", "/").replaceAll("%20", "+");

/** An S3 Inventory report's manifest.json under `at`, naming its data files; the job input that reads it. */
const putInventory = async (at: string, fileSchema: string, files: readonly string[]): Promise<string> => {
  await cloud.put(
    `${at}/manifest.json`,
    JSON.stringify({
      sourceBucket: cloud.input,
      destinationBucket: `arn:aws:s3:::${cloud.input}`,
      version: "2016-11-30",
      fileFormat: "CSV",
      fileSchema,
      files: files.map((key) => ({ key })),
    }),
  );
  return `manifest:s3://${cloud.input}/${at}/manifest.json`;
};

describe("manifest inputs on the emulated cloud", () => {
  it("reads the objects a plain list names: keys of its bucket, full URIs and prefixes", async () => {
    // A folder named _work (or _anything) below a listed prefix is hidden, as Hadoop has it: left out, and counted.
    await cloud.put("data/site a/_work/notes.txt", "a\nb\nc\n");
    objects.set("data/site a/_work/notes.txt", 3);
    await cloud.put(
      "lists/picks.txt",
      ["# the lab's picks", "data/log-0.txt", "", `s3://${cloud.input}/data/x+y.txt`, "data/site a/"].join("\r\n"),
    );
    const { status, result } = await count("from-list", [`manifest:s3://${cloud.input}/lists/picks.txt`]);
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expect(result).toEqual({
      records: linesOf("data/log-0.txt", "data/x+y.txt", "data/site a/log 2.txt", "data/site a/log 3.txt"),
    });
    // Named as a local walk names it: the hidden folder, once.
    expect(status.hidden).toEqual({ count: 1, first: [`s3://${cloud.input}/data/site a/_work/`] });
  });

  it("reads the rows of a Batch Operations CSV, keys URL-encoded, each object it names", async () => {
    // A prefix's listing leaves out the bucket's `_work/` (cloudmill's own state); a row names its object on purpose.
    await cloud.put("_work/named.txt", "one\ntwo\nthree\n");
    await cloud.put(
      "lists/picks.csv",
      `${cloud.input},data/site%20a/log%203.txt\n"${cloud.input}","data/x%2By.txt"\n${cloud.input},_work/named.txt\n`,
    );
    const { status, result } = await count("from-csv", [`manifest:s3://${cloud.input}/lists/picks.csv`]);
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expect(result).toEqual({ records: linesOf("data/site a/log 3.txt", "data/x+y.txt") + 3 });
  });

  it("reads an inventory report's current objects, sized and pinned by the report", async () => {
    const row = async (key: string, latest = true, deleted = false) =>
      [
        cloud.input,
        inventoryKey(key),
        deleted ? "" : String((await cloud.get(cloud.input, key))?.length ?? 0),
        deleted ? "" : await etagOf(key),
        String(latest),
        String(deleted),
      ]
        .map((f) => `"${f}"`)
        .join(",");
    const prefix = `inventory/${cloud.input}/daily`;
    await cloud.put(
      `${prefix}/data/a.csv.gz`,
      gzipSync(`${[await row("data/log-1.txt"), await row("data/site a/log 2.txt")].join("\n")}\n`),
    );
    await cloud.put(
      `${prefix}/data/b.csv.gz`,
      gzipSync(`${[await row("data/other.txt"), await row("data/log-0.txt", false)].join("\n")}\n`),
    );
    const manifest = await putInventory(`${prefix}/2026-12-01T00-00Z`, "Bucket, Key, Size, ETag, IsLatest, IsDeleteMarker", [
      `${prefix}/data/a.csv.gz`,
      `${prefix}/data/b.csv.gz`,
    ]);
    const { status, result } = await count("from-inventory", [manifest]);
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expect(result).toEqual({ records: linesOf("data/log-1.txt", "data/site a/log 2.txt", "data/other.txt") });

    // An object rewritten since the report was taken is not read as the report described it.
    await cloud.put("data/other.txt", "rewritten\n");
    const stale = await count("from-stale-inventory", [manifest]);
    expect(stale.status.state).toBe("failed");
    expect(stale.status.error?.code).toBe("INPUT_CHANGED");
  });

  it("leaves an inventory's folder markers out when its report has no Size field (they are HEADed, then seen)", async () => {
    await cloud.put("data/marked/", "");
    const prefix = `inventory/${cloud.input}/keys-only`;
    const rows = ["data/log-1.txt", "data/marked/", "data/log-0.txt"].map((k) => `"${cloud.input}","${inventoryKey(k)}"`);
    await cloud.put(`${prefix}/data/a.csv.gz`, gzipSync(`${rows.join("\n")}\n`));
    const manifest = await putInventory(`${prefix}/2026-12-02T00-00Z`, "Bucket, Key", [`${prefix}/data/a.csv.gz`]);
    const { status, result } = await count("from-keys-only-inventory", [manifest]);
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expect(status.inputs).toEqual(["data/log-1.txt", "data/log-0.txt"].map((k) => `s3://${cloud.input}/${k}`));
    expect(result).toEqual({ records: linesOf("data/log-1.txt", "data/log-0.txt") });
  });

  it("fails a job whose list names nothing", async () => {
    await cloud.put("lists/empty.txt", "# to fill in later\n");
    const { status } = await count("from-empty-list", [`manifest:s3://${cloud.input}/lists/empty.txt`]);
    expect(status.state).toBe("failed");
    expect(status.error?.code).toBe("INPUT_NOT_FOUND");
    expect(JSON.stringify(status.error)).toContain("the manifest lists no inputs");
  });

  it("fails a job whose list names a missing object, naming the manifest's line", async () => {
    await cloud.put("lists/bad.txt", "data/log-0.txt\ndata/nope.txt\n");
    const { status } = await count("from-bad-list", [`manifest:s3://${cloud.input}/lists/bad.txt`]);
    expect(status.state).toBe("failed");
    expect(status.error?.code).toBe("INPUT_NOT_FOUND");
    expect(JSON.stringify(status.error)).toContain(`s3://${cloud.input}/data/nope.txt`);
    expect(JSON.stringify(status.error)).toMatch(/lists\/bad\.txt:2/);
  });

  it("leaves a prefix's hidden objects out (a committer's _SUCCESS, .crc files, _temporary/), counting them in the status", async () => {
    await cloud.put("spark/part-00000.csv", "k,v\na,1\nb,2\n");
    await cloud.put("spark/part-00001.csv", "k,v\nc,3\n");
    await cloud.put("spark/_SUCCESS", '{"name":"s3a committer"}');
    await cloud.put("spark/.part-00000.csv.crc", "crc");
    await cloud.put("spark/_temporary/0/part-00002.csv", "k,v\nz,9\n");
    const { status, result } = await count("spark-folder", [`s3://${cloud.input}/spark/`]);
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    // Python's csv: two rows in the first part, one in the second.
    expect(result).toEqual({ records: 3 });
    expect(status).toMatchObject({
      hidden: {
        count: 3,
        first: [".part-00000.csv.crc", "_SUCCESS", "_temporary/"].map((k) => `s3://${cloud.input}/spark/${k}`),
      },
    });
  });

  it("fails a job naming the output bucket (another job's parts), directly or in its list, as the stack's splitter does", async () => {
    const done = await count("readable", ["s3://" + cloud.input + "/data/log-0.txt"]);
    expect(done.status.state).toBe("succeeded");
    const other = `s3://${cloud.output}/_jobs/readable/result.json`;
    for (const [id, inputs] of [
      ["reads-output", [other]],
      ["lists-output", [`manifest:s3://${cloud.input}/lists/output.txt`]],
    ] as const) {
      if (id === "lists-output") await cloud.put("lists/output.txt", `${other}\n`);
      const { status } = await count(id, [...inputs]);
      expect(status.state).toBe("failed");
      expect(status.error).toMatchObject({
        code: "INVALID_SPEC",
        message: expect.stringContaining(`bucket ${cloud.output} is not one this stack reads inputs from (${cloud.input})`),
      });
    }
  });
});
