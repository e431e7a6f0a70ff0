import {
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  CompleteMultipartUploadCommand,
} from "@aws-sdk/client-s3";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { S3Event } from "aws-lambda";
import { describe, expect, it, vi } from "vitest";
import { S3BlobStore } from "../../lib/aws/S3BlobStore.js";
import { awsClients } from "../../lib/aws/clients.js";
import { parseS3Uri, s3Uri } from "../../lib/core/s3Uri.js";
import { encodeEventKey } from "../../lib/dev/emulator.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { collect, describeBlobStoreContract } from "../contract/blobStoreContract.js";
import { useEmulator } from "../helpers/emulator.js";

const aws = useEmulator();

describeBlobStoreContract("S3BlobStore (emulated)", async () => ({ store: new S3BlobStore(aws.s3, await aws.freshBucket()) }));

/** A limit to give up waiting for an event at, not a bound on how soon it comes. */
const EVENT_WAIT_MS = 20_000;

/**
 * Collects the emulator's S3 events for these buckets (other tests' writes are not ours)
 * until the returned stop() is called.
 */
const recordEvents = (
  ...buckets: string[]
): { events: S3Event[]; stop: () => void; next: (n?: number) => Promise<S3Event[]>; barrier: (bucket: string) => Promise<S3Event[]> } => {
  const events: S3Event[] = [];
  const stop = aws.emulator.onObjectCreated((e) => {
    if (e.Records.some((r) => buckets.includes(r.s3.bucket.name))) events.push(e);
  });
  const next = async (n = 1): Promise<S3Event[]> => {
    await vi.waitFor(() => expect(events.length).toBeGreaterThanOrEqual(n), { timeout: EVENT_WAIT_MS, interval: 10 });
    return events;
  };
  /**
   * Instead of waiting a while to see that nothing more comes: writes one more object and waits
   * for its event. The emulator emits events in the order its requests complete, so any event
   * of an earlier request arrives before this one; the events are returned with it removed.
   */
  const barrier = async (bucket: string): Promise<S3Event[]> => {
    const key = `barrier-${events.length}`;
    await aws.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: "b" }));
    const isBarrier = (e: S3Event): boolean => e.Records.some((r) => r.s3.bucket.name === bucket && r.s3.object.key === key);
    await vi.waitFor(() => expect(events.some(isBarrier)).toBe(true), { timeout: EVENT_WAIT_MS, interval: 10 });
    const at = events.findIndex(isBarrier);
    // Nothing arrives after the barrier either: its own event is the last.
    expect(at).toBe(events.length - 1);
    return events.slice(0, at);
  };
  return { events, stop, next, barrier };
};

describe("S3BlobStore", () => {
  it("maps AWS failures to one-line ENVIRONMENT errors naming bucket, key and AWS error", async () => {
    const store = new S3BlobStore(awsClients({ endpoint: "http://127.0.0.1:1" }, {}).s3, "lab-bucket");
    const err = await store.put("k/x.txt", "x").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CloudmillError);
    expect((err as CloudmillError).code).toBe(ErrorCode.ENVIRONMENT);
    expect((err as CloudmillError).message).toContain("s3://lab-bucket/k/x.txt");
    expect((err as CloudmillError).message).toContain("ECONNREFUSED");
    expect((err as CloudmillError).message).not.toContain("\n");
  });

  it("takes a bucket that does not exist for INPUT_NOT_FOUND: it stays so, and a job fails at once rather than retry", async () => {
    const store = new S3BlobStore(aws.s3, "no-such-bucket-here");
    for (const attempt of [
      () => store.put("k/x.txt", "x"),
      async () => {
        for await (const listed of store.list("k/")) expect(listed).toBeUndefined();
      },
      () => store.get("k/x.txt"),
    ]) {
      const err = await attempt().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CloudmillError);
      expect((err as CloudmillError).code).toBe(ErrorCode.INPUT_NOT_FOUND);
      expect((err as CloudmillError).message).toMatch(/s3:\/\/no-such-bucket-here\/k\/(x\.txt)?: no bucket no-such-bucket-here$/);
    }
  });

  it("names the S3 URI and the expected ETag when an input changed", async () => {
    const bucket = await aws.freshBucket();
    const store = new S3BlobStore(aws.s3, bucket);
    await store.put("in.txt", "one");
    await expect(store.get("in.txt", { etag: '"stale"' })).rejects.toThrow(
      `s3://${bucket}/in.txt changed since the job listed its inputs (expected ETag "stale")`,
    );
  });

  it("lists keys holding a carriage return, a line feed, spaces, pluses and percents as they are (a URL-encoded listing)", async () => {
    const bucket = await aws.freshBucket();
    const store = new S3BlobStore(aws.s3, bucket);
    const keys = ["d/a\rb", "d/a\nb", "d/a b+c%20.txt", "d/\u00e9\t&<x>'\""];
    for (const [i, key] of keys.entries()) await store.put(key, `${i}\n`);
    const listed: string[] = [];
    for await (const o of store.list("d/")) listed.push(o.key);
    expect(listed).toEqual([...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    // boto3, which asks for URL-encoded listings by itself, sees the same names in the emulator.
    const script =
      "import boto3,json,sys;c=boto3.client('s3',endpoint_url=sys.argv[1],region_name='us-east-1',aws_access_key_id='x',aws_secret_access_key='y');print(json.dumps([o['Key'] for o in c.list_objects_v2(Bucket=sys.argv[2],Prefix='d/')['Contents']]))";
    // Not a sync call: the emulator answers from this process.
    const { stdout } = await promisify(execFile)("python3", ["-c", script, aws.emulator.endpoint, bucket], { encoding: "utf8" });
    expect(JSON.parse(stdout)).toEqual(listed);
  });

  it("uses multipart above the threshold (the ETag shows the part count)", async () => {
    const store = new S3BlobStore(aws.s3, await aws.freshBucket());
    await store.put("mp.bin", Buffer.alloc(9 * 1024 * 1024, 3));
    expect((await store.head("mp.bin"))!.etag).toMatch(/-2"$/);
    await store.put("single.bin", Buffer.alloc(8 * 1024 * 1024, 3));
    expect((await store.head("single.bin"))!.etag).not.toMatch(/-\d+"$/);
  });
});

describe("awsClients and S3 URIs", () => {
  it("formats and parses s3:// URIs", () => {
    expect(s3Uri("b", "a b/c.txt")).toBe("s3://b/a b/c.txt");
    expect(parseS3Uri("s3://my-bucket/a b/ü%.txt")).toEqual({ bucket: "my-bucket", key: "a b/ü%.txt" });
    for (const bad of ["s3://bucket", "s3://bucket/", "http://b/k", "s3:///k", "s3://Bad_Bucket/k", ""]) {
      expect(() => parseS3Uri(bad), bad).toThrow(CloudmillError);
    }
    expect(() => parseS3Uri("nope")).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_SPEC }));
  });

  it("uses dummy credentials for an endpoint only when none are configured", async () => {
    const bare = awsClients({ endpoint: "http://127.0.0.1:1" }, {});
    expect(await bare.s3.config.credentials()).toMatchObject({ accessKeyId: "cloudmill" });
    expect(await bare.s3.config.region()).toBe("us-east-1");
    expect(bare.s3.config.forcePathStyle).toBe(true);
    const configured = awsClients(
      { endpoint: "http://127.0.0.1:1" },
      { AWS_ACCESS_KEY_ID: "AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY: "secret", AWS_REGION: "eu-west-1" },
    );
    expect(await configured.sqs.config.region()).toBe("eu-west-1");
    for (const c of [bare, configured]) {
      c.s3.destroy();
      c.sqs.destroy();
    }
  });
});

describe("emulator", () => {
  it("encodes event keys as S3 does", () => {
    expect(encodeEventKey("a b+c/ü%.txt")).toBe("a+b%2Bc/%C3%BC%25.txt");
    expect(encodeEventKey("x/(1)!'~*.-_")).toBe("x/%281%29%21%27%7E*.-_");
    const key = "odd/a b+c/ü%.txt (copy) & =?#";
    expect(decodeURIComponent(encodeEventKey(key).replace(/\+/g, " "))).toBe(key);
  });

  it("emits ObjectCreated:Put with the URL-encoded key, size and unquoted ETag", async () => {
    const bucket = await aws.freshBucket();
    const rec = recordEvents(bucket);
    try {
      await aws.s3.send(new PutObjectCommand({ Bucket: bucket, Key: "a b+c/ü%.txt", Body: "hello" }));
      const [event] = await rec.next();
      expect(await rec.barrier(bucket)).toHaveLength(1); // one event per PUT
      expect(event!.Records).toHaveLength(1);
      const r = event!.Records[0]!;
      const head = await new S3BlobStore(aws.s3, bucket).head("a b+c/ü%.txt");
      expect(r).toMatchObject({
        eventSource: "aws:s3",
        eventName: "ObjectCreated:Put",
        awsRegion: "us-east-1",
        s3: {
          bucket: { name: bucket, arn: `arn:aws:s3:::${bucket}` },
          object: { key: "a+b%2Bc/%C3%BC%25.txt", size: 5, eTag: head!.etag.replaceAll('"', "") },
        },
      });
      expect(r.s3.object.sequencer).toMatch(/^[0-9A-F]+$/);
      expect(Date.parse(r.eventTime)).not.toBeNaN();
    } finally {
      rec.stop();
    }
  });

  it("emits ObjectCreated:CompleteMultipartUpload once for a multipart upload", async () => {
    const bucket = await aws.freshBucket();
    const rec = recordEvents(bucket);
    try {
      await new S3BlobStore(aws.s3, bucket).put("a b+c/ü%.txt", Buffer.alloc(9 * 1024 * 1024, 1));
      const [event] = await rec.next();
      expect(await rec.barrier(bucket)).toHaveLength(1); // none for the parts, none twice
      expect(event!.Records[0]).toMatchObject({
        eventName: "ObjectCreated:CompleteMultipartUpload",
        s3: { object: { key: "a+b%2Bc/%C3%BC%25.txt", size: 9 * 1024 * 1024 } },
      });
      expect(event!.Records[0]!.s3.object.eTag).toMatch(/^[0-9a-f]{32}-2$/);
    } finally {
      rec.stop();
    }
  });

  it("emits ObjectCreated:Copy for a copy, with increasing sequencers", async () => {
    const bucket = await aws.freshBucket();
    const rec = recordEvents(bucket);
    try {
      await aws.s3.send(new PutObjectCommand({ Bucket: bucket, Key: "src.txt", Body: "copy me" }));
      await aws.s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "dst.txt", CopySource: `${bucket}/src.txt` }));
      await rec.next(2);
      const events = await rec.barrier(bucket); // these two and no other
      expect(events.map((e) => e.Records[0]!.eventName)).toEqual(["ObjectCreated:Put", "ObjectCreated:Copy"]);
      expect(events[1]!.Records[0]!.s3.object).toMatchObject({ key: "dst.txt", size: 7 });
      const [a, b] = events.map((e) => e.Records[0]!.s3.object.sequencer);
      expect(a! < b!).toBe(true);
    } finally {
      rec.stop();
    }
  });

  it("emits nothing for failed requests, parts, reads or deletes", async () => {
    const bucket = await aws.freshBucket();
    const store = new S3BlobStore(aws.s3, bucket);
    await store.put("exists.txt", "x");
    const rec = recordEvents(bucket, "missing-bucket");
    try {
      await expect(aws.s3.send(new PutObjectCommand({ Bucket: "missing-bucket", Key: "k", Body: "x" }))).rejects.toThrow();
      await expect(
        aws.s3.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: "k",
            UploadId: "no-such-upload",
            MultipartUpload: { Parts: [{ PartNumber: 1, ETag: '"x"' }] },
          }),
        ),
      ).rejects.toThrow();
      const { UploadId } = await aws.s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: "parts" }));
      await aws.s3.send(new UploadPartCommand({ Bucket: bucket, Key: "parts", UploadId, PartNumber: 1, Body: "p" }));
      await collect(await store.get("exists.txt"));
      await store.head("exists.txt");
      await store.delete("exists.txt");
      expect(await rec.barrier(bucket)).toEqual([]);
    } finally {
      rec.stop();
    }
  });

  it("survives a throwing listener, logging it to stderr", async () => {
    const bucket = await aws.freshBucket();
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    const off = aws.emulator.onObjectCreated(() => {
      throw new Error("listener boom");
    });
    const rec = recordEvents(bucket);
    try {
      await aws.s3.send(new PutObjectCommand({ Bucket: bucket, Key: "k1", Body: "1" }));
      await aws.s3.send(new PutObjectCommand({ Bucket: bucket, Key: "k2", Body: "2" }));
      await rec.next(2);
      await vi.waitFor(() => expect(stderr.mock.calls.map((c) => String(c[0])).join("")).toContain("listener boom"), {
        timeout: EVENT_WAIT_MS,
      });
    } finally {
      off();
      rec.stop();
      stderr.mockRestore();
    }
  });

  it("accepts a single PUT larger than fauxqs's 11 MiB default body limit", async () => {
    const bucket = await aws.freshBucket();
    const body = Buffer.alloc(12 * 1024 * 1024, 9);
    await aws.s3.send(new PutObjectCommand({ Bucket: bucket, Key: "big-single.bin", Body: body }));
    expect((await new S3BlobStore(aws.s3, bucket).head("big-single.bin"))!.size).toBe(body.length);
  });
});
