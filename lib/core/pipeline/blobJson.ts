/** Small helpers over a BlobStore for the JSON objects the pipeline keeps. */
import type { z } from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import { parseJsonWith } from "../parseJson.js";
import type { BlobStore, GetOptions } from "../ports.js";
import { backoffMs, sleep, type Backoff } from "../sleep.js";

/** Attempts of a whole read (the SDK retries requests, but not a body that fails part-way). */
export const READ_ATTEMPTS = 3;
const READ_BACKOFF: Backoff = { baseMs: 50, factor: 4, capMs: 10_000, jitter: "half" };

/**
 * A whole object (or the range of it asked for). A read that fails part-way (a reset connection: ENVIRONMENT) is tried again,
 * since a reader that needs many objects in one go (the reducer reads every part) would
 * otherwise fail with a likelihood that grows with their number.
 */
export const readBytes = async (
  store: BlobStore,
  key: string,
  signal?: AbortSignal,
  range: Pick<GetOptions, "start" | "end" | "etag"> = {},
): Promise<Buffer> => {
  for (let attempt = 1; ; attempt++) {
    try {
      const parts: Buffer[] = [];
      for await (const chunk of await store.get(key, { ...range, ...(signal ? { signal } : {}) }))
        parts.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      return Buffer.concat(parts);
    } catch (err) {
      if (attempt >= READ_ATTEMPTS || signal?.aborted || !(err instanceof CloudmillError && err.code === ErrorCode.ENVIRONMENT)) throw err;
      await sleep(backoffMs(READ_BACKOFF, attempt), signal);
    }
  }
};

/** Parses a stored JSON object with a schema; a corrupt object is an INTERNAL error naming it. */
export const readJson = async <S extends z.ZodType>(store: BlobStore, key: string, schema: S, signal?: AbortSignal): Promise<z.output<S>> =>
  parseJsonWith((await readBytes(store, key, signal)).toString("utf8"), schema, `${store.name}/${key}`, ErrorCode.INTERNAL);

/** Like readJson, but undefined when the object does not exist. */
export const readJsonIfExists = async <S extends z.ZodType>(
  store: BlobStore,
  key: string,
  schema: S,
  signal?: AbortSignal,
): Promise<z.output<S> | undefined> => {
  try {
    return await readJson(store, key, schema, signal);
  } catch (err) {
    if (err instanceof CloudmillError && err.code === ErrorCode.INPUT_NOT_FOUND) return undefined;
    throw err;
  }
};

export const writeJson = (store: BlobStore, key: string, value: unknown): Promise<void> =>
  store.put(key, JSON.stringify(value), { contentType: "application/json" });

export const exists = async (store: BlobStore, key: string): Promise<boolean> => (await store.head(key)) !== undefined;
