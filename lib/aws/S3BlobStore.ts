import { Readable } from "node:stream";
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, paginateListObjectsV2 } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { DEFAULTS, MiB } from "../core/constants.js";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import type { BlobInfo, BlobStore, GetOptions, ListOptions, PutOptions } from "../core/ports.js";
import { s3Uri } from "../core/s3Uri.js";
import { resolveRange } from "../core/byteRange.js";
import { decodeUrlEncodedKey } from "./events.js";

/** Multipart part size: ≥ 5 MiB (S3's minimum) and ≤ 10 MiB so it fits any emulator's body limit. */
const PART_SIZE = 8 * MiB;
/** Parts uploaded at once by one put. */
const PART_CONCURRENCY = 4;

/** A BlobStore over one S3 bucket. ETags are S3's, quotes included. */
export class S3BlobStore implements BlobStore {
  readonly name: string;

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
  ) {
    this.name = bucket;
  }

  async head(key: string): Promise<BlobInfo | undefined> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { key, size: res.ContentLength ?? 0, etag: res.ETag ?? "" };
    } catch (err) {
      if (status(err) === 404) return undefined;
      throw this.awsError("HeadObject", key, err);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<AsyncIterable<Uint8Array>> {
    const { start, end } = resolveRange(options);
    if (end !== undefined && start === end) return empty();
    // S3 clamps an end past the object; a start at or past it is 416 (handled below).
    const range = start === 0 && end === undefined ? undefined : `bytes=${start}-${end === undefined ? "" : end - 1}`;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range, IfMatch: options.etag }), {
        abortSignal: options.signal,
      });
      // In Node the body is an http.IncomingMessage: an async iterable of Buffers, destroyed
      // (socket released) when a consumer breaks out of the loop.
      const body = res.Body as Readable | undefined;
      return body ? this.streamed(body, key, options.signal) : empty();
    } catch (err) {
      const uri = s3Uri(this.bucket, key);
      if (options.signal?.aborted) throw options.signal.reason;
      switch (status(err) === 412 ? "PreconditionFailed" : name(err)) {
        case "PreconditionFailed":
          throw new CloudmillError(
            ErrorCode.INPUT_CHANGED,
            `${uri} changed since the job listed its inputs (expected ETag ${options.etag})`,
            {},
            { cause: err },
          );
        case "NoSuchKey":
          throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, `${uri} does not exist`, {}, { cause: err });
        case "InvalidRange":
          // The object exists (and matched If-Match, which S3 checks first); the range starts past its end.
          return empty();
        default:
          throw this.awsError("GetObject", key, err);
      }
    }
  }

  async put(key: string, body: Uint8Array | string | AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<void> {
    const bytes = typeof body === "string" ? Buffer.from(body) : body;
    // A stream of unknown length: multipart as it comes (one PutObject if it fits one part).
    const params = {
      Bucket: this.bucket,
      Key: key,
      Body: bytes instanceof Uint8Array ? bytes : Readable.from(bytes),
      ContentType: options.contentType,
    };
    try {
      if (bytes instanceof Uint8Array && bytes.length <= DEFAULTS.multipartThreshold) {
        await this.client.send(new PutObjectCommand({ ...params, ContentLength: bytes.length }));
      } else {
        await new Upload({
          client: this.client,
          params,
          partSize: PART_SIZE,
          queueSize: PART_CONCURRENCY,
          leavePartsOnError: false,
        }).done();
      }
    } catch (err) {
      // A streamed body's own error (the pieces' producer failed) is not S3's.
      if (err instanceof CloudmillError) throw err;
      throw this.awsError("PutObject", key, err);
    }
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<BlobInfo> {
    try {
      // S3 returns keys in ascending UTF-8 byte order, page after page. URL-encoded: XML would
      // carry a key's carriage return as a line feed (another key's name), as botocore knows.
      const pages = paginateListObjectsV2(
        { client: this.client },
        {
          Bucket: this.bucket,
          Prefix: prefix,
          EncodingType: "url",
          ...(options.startAfter !== undefined ? { StartAfter: options.startAfter } : {}),
        },
      );
      for await (const page of pages) {
        for (const o of page.Contents ?? []) {
          if (o.Key !== undefined) yield { key: decodeUrlEncodedKey(o.Key), size: o.Size ?? 0, etag: o.ETag ?? "" };
        }
      }
    } catch (err) {
      throw this.awsError("ListObjectsV2", prefix, err);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      if (status(err) === 404 && name(err) !== "NoSuchBucket") return;
      throw this.awsError("DeleteObject", key, err);
    }
  }

  /**
   * The body, with a failure part-way (a reset connection, a truncated answer) turned into an
   * ENVIRONMENT error naming the object, so that callers retry it as they retry S3's other
   * failures instead of taking it for a bug. Breaking out of the loop still destroys the body.
   */
  private async *streamed(body: Readable, key: string, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
    try {
      for await (const chunk of body) yield chunk as Uint8Array;
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const e = this.awsError("GetObject", key, err);
      throw new CloudmillError(e.code, `${e.message} (while reading the body)`, e.context, { cause: err });
    } finally {
      body.destroy();
    }
  }

  private awsError(op: string, key: string, err: unknown): CloudmillError {
    if (err instanceof CloudmillError) return err;
    // A bucket that does not exist stays so (a typo in a spec's input): trying again would only
    // leave the job without a status; a job fails at once on INPUT_NOT_FOUND.
    if (name(err) === "NoSuchBucket")
      return new CloudmillError(
        ErrorCode.INPUT_NOT_FOUND,
        `${op} ${s3Uri(this.bucket, key)}: no bucket ${this.bucket}`,
        {},
        { cause: err },
      );
    const detail = err instanceof Error && err.message && err.message !== name(err) ? `: ${err.message}` : "";
    return new CloudmillError(
      ErrorCode.ENVIRONMENT,
      `${op} ${s3Uri(this.bucket, key)} failed: ${name(err)}${detail}`.replace(/\s*\n\s*/g, " "),
      {},
      { cause: err },
    );
  }
}

async function* empty(): AsyncGenerator<Uint8Array> {}

const name = (err: unknown): string => (err instanceof Error ? err.name : String(err));

const status = (err: unknown): number | undefined =>
  (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
