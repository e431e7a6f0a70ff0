/**
 * What a write of n bytes costs in S3 requests (putRequestsOf, which reports, estimates and the
 * cost ceiling price): checked against the requests S3BlobStore.put sends to the emulator, counted
 * on the client, for bodies in memory and streamed, either side of the multipart threshold.
 */
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { S3BlobStore } from "../../lib/aws/S3BlobStore.js";
import { putRequestsOf } from "../../lib/core/report/prices.js";
import { useEmulator } from "../helpers/emulator.js";
import { countingS3 } from "../sdk/support.js";

const aws = useEmulator();
const MiB = 1024 * 1024;

/** A body of `bytes` streamed in 1 MiB pieces, its length unknown to the store. */
const streamed = (bytes: number): AsyncIterable<Uint8Array> =>
  Readable.from(
    (function* () {
      for (let left = bytes; left > 0; left -= MiB) yield Buffer.alloc(Math.min(MiB, left), 0x61);
    })(),
  );

describe("the S3 requests of a write", () => {
  it("are one PutObject up to 8 MiB, else a create, a part per 8 MiB and a complete, as S3BlobStore sends them", async () => {
    const bucket = await aws.freshBucket();
    const { s3, counts, total } = countingS3(aws.emulator.endpoint);
    const store = new S3BlobStore(s3, bucket);
    // Bytes, how they are sent, and the requests by hand.
    const cases: [number, "buffer" | "stream", number][] = [
      [1000, "buffer", 1],
      [8 * MiB, "buffer", 1],
      [8 * MiB + 1, "buffer", 2 + 2],
      [20 * MiB, "buffer", 2 + 3],
      [100_000, "stream", 1],
      [20 * MiB, "stream", 2 + 3],
    ];
    try {
      for (const [bytes, how, requests] of cases) {
        counts.clear();
        await store.put(`w-${bytes}-${how}`, how === "buffer" ? Buffer.alloc(bytes, 0x61) : streamed(bytes));
        expect(total(), `${bytes} B as a ${how}: ${JSON.stringify([...counts])}`).toBe(requests);
        expect(putRequestsOf(bytes), `${bytes} B`).toBe(requests);
        expect((await store.head(`w-${bytes}-${how}`))?.size).toBe(bytes);
      }
    } finally {
      s3.destroy();
    }
  });
});
