import { createHash, randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import type { BlobStore } from "../../lib/core/ports.js";

export type MakeBlobStore = () => Promise<{ store: BlobStore; cleanup?: () => Promise<void> }>;

/** Concatenates a get's stream, checking that it yields only Uint8Arrays. */
export const collect = async (stream: AsyncIterable<Uint8Array>): Promise<Buffer> => {
  const parts: Uint8Array[] = [];
  for await (const part of stream) {
    expect(part).toBeInstanceOf(Uint8Array);
    parts.push(part);
  }
  return Buffer.concat(parts);
};

const keysOf = async (store: BlobStore, prefix: string): Promise<string[]> => {
  const keys: string[] = [];
  for await (const info of store.list(prefix)) keys.push(info.key);
  return keys;
};

const byteSorted = (keys: readonly string[]): string[] => [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));

/** Rejects with a CloudmillError of this code whose message mentions `mention`. */
const expectCode = async (p: Promise<unknown>, code: ErrorCode, mention?: string): Promise<void> => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a CloudmillError ${code}`).toBeInstanceOf(CloudmillError);
  expect((err as CloudmillError).code).toBe(code);
  if (mention !== undefined) expect((err as CloudmillError).message).toContain(mention);
};

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/**
 * The BlobStore contract (lib/ports.ts): every adapter passes this suite. Each test gets a
 * fresh, empty store from makeStore.
 */
export const describeBlobStoreContract = (name: string, makeStore: MakeBlobStore): void => {
  describe(`BlobStore contract: ${name}`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    const fresh = async (): Promise<BlobStore> => {
      const { store, cleanup } = await makeStore();
      if (cleanup) cleanups.push(cleanup);
      return store;
    };
    afterEach(async () => {
      await Promise.all(cleanups.splice(0).map((c) => c()));
    });

    it("has a name", async () => {
      expect((await fresh()).name).toBeTruthy();
    });

    it("heads a missing object as undefined", async () => {
      const store = await fresh();
      expect(await store.head("nope/missing.txt")).toBeUndefined();
    });

    it("round-trips binary bytes, with size and a non-empty ETag", async () => {
      const store = await fresh();
      const body = Buffer.concat([ALL_BYTES, Buffer.from([0, 0, 0xff, 0xff]), ALL_BYTES]);
      await store.put("bin/all-bytes.bin", body);
      const info = await store.head("bin/all-bytes.bin");
      expect(info).toMatchObject({ key: "bin/all-bytes.bin", size: body.length });
      expect(info!.etag).toMatch(/^".+"$/);
      expect((await collect(await store.get("bin/all-bytes.bin"))).equals(body)).toBe(true);
      expect((await collect(await store.get("bin/all-bytes.bin", { etag: info!.etag }))).equals(body)).toBe(true);
    });

    it("stores strings as UTF-8", async () => {
      const store = await fresh();
      await store.put("text.txt", "héllo ✓\n", { contentType: "text/plain" });
      const got = await collect(await store.get("text.txt"));
      expect(got.toString("utf8")).toBe("héllo ✓\n");
      expect((await store.head("text.txt"))!.size).toBe(Buffer.byteLength("héllo ✓\n"));
    });

    it("writes a stream of pieces whole, small or past a multipart part, and an empty stream as an empty object", async () => {
      const store = await fresh();
      const pieces = (n: number, size: number) =>
        (async function* () {
          for (let i = 0; i < n; i++) yield Buffer.alloc(size, 97 + (i % 26));
        })();
      await store.put("stream/small.txt", pieces(3, 10));
      expect((await collect(await store.get("stream/small.txt"))).toString()).toBe(`${"a".repeat(10)}${"b".repeat(10)}${"c".repeat(10)}`);
      // 10 MiB in 1 MiB pieces: past one 8 MiB multipart part.
      await store.put("stream/large.bin", pieces(10, 1 << 20));
      const large = await collect(await store.get("stream/large.bin"));
      expect(large.length).toBe(10 << 20);
      for (let i = 0; i < 10; i++) expect(large[i << 20]).toBe(97 + i);
      await store.put("stream/empty", pieces(0, 1));
      expect(await store.head("stream/empty")).toMatchObject({ size: 0 });
    });

    it("a stream that fails part-way fails the put with its own error and leaves no object", async () => {
      const store = await fresh();
      const failing = (async function* () {
        yield Buffer.alloc(1 << 20, 120);
        throw new CloudmillError(ErrorCode.BAD_RECORD, "the producer failed");
      })();
      await expect(store.put("stream/failed.bin", failing)).rejects.toMatchObject({
        code: ErrorCode.BAD_RECORD,
        message: "the producer failed",
      });
      expect(await store.head("stream/failed.bin")).toBeUndefined();
    });

    it("round-trips an empty object; any range of it is empty", async () => {
      const store = await fresh();
      await store.put("empty", new Uint8Array(0));
      expect(await store.head("empty")).toMatchObject({ key: "empty", size: 0 });
      expect((await collect(await store.get("empty"))).length).toBe(0);
      expect((await collect(await store.get("empty", { start: 0, end: 10 }))).length).toBe(0);
      expect((await collect(await store.get("empty", { start: 3 }))).length).toBe(0);
    });

    it("reads ranges [start, end): inside, to the end, and empty", async () => {
      const store = await fresh();
      const body = Buffer.from("0123456789abcdefghij");
      await store.put("r.txt", body);
      const read = async (start?: number, end?: number): Promise<string> =>
        (await collect(await store.get("r.txt", { start, end }))).toString();
      expect(await read(0, 1)).toBe("0");
      expect(await read(3, 7)).toBe("3456");
      expect(await read(10)).toBe("abcdefghij");
      expect(await read(undefined, 5)).toBe("01234");
      expect(await read(19, 20)).toBe("j");
      expect(await read(5, 5)).toBe("");
    });

    it("clamps ranges past the end: the bytes that exist, or nothing", async () => {
      const store = await fresh();
      await store.put("short.txt", "abcdef");
      const read = async (start: number, end?: number): Promise<string> =>
        (await collect(await store.get("short.txt", { start, end }))).toString();
      expect(await read(4, 100)).toBe("ef");
      expect(await read(0, 7)).toBe("abcdef");
      expect(await read(6, 10)).toBe("");
      expect(await read(6)).toBe("");
      expect(await read(50, 60)).toBe("");
    });

    it("makes no request for an empty range, so even a missing object yields nothing", async () => {
      const store = await fresh();
      expect((await collect(await store.get("missing", { start: 7, end: 7 }))).length).toBe(0);
    });

    it("refuses malformed ranges with INTERNAL", async () => {
      const store = await fresh();
      await store.put("x", "abc");
      await expectCode(store.get("x", { start: 2, end: 1 }), ErrorCode.INTERNAL);
      await expectCode(store.get("x", { start: -1 }), ErrorCode.INTERNAL);
      await expectCode(store.get("x", { start: 0.5 }), ErrorCode.INTERNAL);
    });

    it("fails a get of a missing object with INPUT_NOT_FOUND naming the key", async () => {
      const store = await fresh();
      await expectCode(store.get("dir/missing.txt"), ErrorCode.INPUT_NOT_FOUND, "dir/missing.txt");
      await expectCode(store.get("dir/missing.txt", { start: 2, end: 9 }), ErrorCode.INPUT_NOT_FOUND, "dir/missing.txt");
    });

    it("changes the ETag on overwrite and fails a read pinned to the old one with INPUT_CHANGED", async () => {
      const store = await fresh();
      await store.put("in/data.txt", "version one\n");
      const before = await store.head("in/data.txt");
      await store.put("in/data.txt", "version two\n"); // same size, different bytes
      const after = await store.head("in/data.txt");
      expect(after!.etag).not.toBe(before!.etag);
      expect(after!.size).toBe(before!.size);
      await expectCode(store.get("in/data.txt", { etag: before!.etag }), ErrorCode.INPUT_CHANGED, "in/data.txt");
      await expectCode(store.get("in/data.txt", { etag: before!.etag, start: 2, end: 5 }), ErrorCode.INPUT_CHANGED);
      const got = await collect(await store.get("in/data.txt", { etag: after!.etag, start: 8 }));
      expect(got.toString()).toBe("two\n");
    });

    it("lists by prefix in ascending UTF-8 byte order, with size and ETag", async () => {
      const store = await fresh();
      const keys = ["p/b", "p/B", "p/a-1", "p/a/1", "p/a/0", "p/_x", "p/ü", "p/z", "p/é", "p/😀", "p/\uffee", "q/other", "pp"];
      await Promise.all(keys.map((k, i) => store.put(k, "x".repeat(i))));
      const listed: { key: string; size: number; etag: string }[] = [];
      for await (const info of store.list("p/")) listed.push(info);
      const expected = byteSorted(keys.filter((k) => k.startsWith("p/")));
      expect(listed.map((i) => i.key)).toEqual(expected);
      for (const info of listed) {
        expect(info.size).toBe(keys.indexOf(info.key));
        expect(info.etag).toBe((await store.head(info.key))!.etag);
      }
      expect(await keysOf(store, "p/a")).toEqual(byteSorted(["p/a-1", "p/a/1", "p/a/0"]));
      expect(await keysOf(store, "p")).toEqual(byteSorted(keys.filter((k) => k.startsWith("p"))));
      expect(await keysOf(store, "")).toEqual(byteSorted(keys));
      expect(await keysOf(store, "nothing/")).toEqual([]);
    });

    it("lists only keys after startAfter, in order, as a listing resumed where one stopped", async () => {
      const store = await fresh();
      const keys = ["r/a", "r/b", "r/b0", "r/bb/c", "r/é"];
      for (const k of keys) await store.put(k, "x");
      const listedAfter = async (startAfter: string): Promise<string[]> => {
        const out: string[] = [];
        for await (const info of store.list("r/", { startAfter })) out.push(info.key);
        return out;
      };
      expect(await listedAfter("r/b")).toEqual(["r/b0", "r/bb/c", "r/é"]);
      // A key that is not there resumes after where it would be.
      expect(await listedAfter("r/ba")).toEqual(["r/bb/c", "r/é"]);
      expect(await listedAfter("r/é")).toEqual([]);
    });

    it("lists more than 1000 objects completely and in order (pagination)", async () => {
      const store = await fresh();
      // Mixed case and punctuation, so that any locale-ordered paging would lose or repeat keys.
      const keys = Array.from({ length: 1100 }, (_, i) => `big/${["a", "B", "_", "c"][i % 4]}${String(i).padStart(4, "0")}`);
      for (let i = 0; i < keys.length; i += 100) {
        await Promise.all(keys.slice(i, i + 100).map((k) => store.put(k, "1")));
      }
      const listed = await keysOf(store, "big/");
      expect(listed.length).toBe(1100);
      expect(listed).toEqual(byteSorted(keys));
    });

    it("handles keys with spaces, +, %, unicode and other punctuation", async () => {
      const store = await fresh();
      const keys = ["odd/a b+c/ü%.txt", "odd/100% done.txt", "odd/plus+plus", "odd/%20literal", "odd/日本語 ファイル", "odd/q?x=1&y=(2)#3"];
      for (const [i, key] of keys.entries()) {
        await store.put(key, `body ${i}`);
        expect((await store.head(key))!.size).toBe(`body ${i}`.length);
        expect((await collect(await store.get(key))).toString()).toBe(`body ${i}`);
      }
      expect(await keysOf(store, "odd/")).toEqual(byteSorted(keys));
      await store.delete(keys[0]!);
      expect(await store.head(keys[0]!)).toBeUndefined();
    });

    it("deletes idempotently", async () => {
      const store = await fresh();
      await store.delete("never/was");
      await store.put("d/x", "1");
      await store.put("d/y", "2");
      await store.delete("d/x");
      await store.delete("d/x");
      expect(await store.head("d/x")).toBeUndefined();
      expect(await keysOf(store, "d/")).toEqual(["d/y"]);
      await expectCode(store.get("d/x"), ErrorCode.INPUT_NOT_FOUND);
    });

    it("round-trips a 20 MiB object whole and in ranges across part boundaries", async () => {
      const store = await fresh();
      const body = randomBytes(20 * 1024 * 1024);
      await store.put("large/blob.bin", body);
      const info = await store.head("large/blob.bin");
      expect(info!.size).toBe(body.length);
      const whole = await collect(await store.get("large/blob.bin", { etag: info!.etag }));
      expect(createHash("sha256").update(whole).digest("hex")).toBe(createHash("sha256").update(body).digest("hex"));
      const mib = 1024 * 1024;
      const slice = await collect(await store.get("large/blob.bin", { start: 8 * mib - 5, end: 16 * mib + 7, etag: info!.etag }));
      expect(slice.equals(body.subarray(8 * mib - 5, 16 * mib + 7))).toBe(true);
    });

    it("rejects a get whose signal is already aborted", async () => {
      const store = await fresh();
      await store.put("a.txt", "abc");
      const ac = new AbortController();
      ac.abort();
      await expect(store.get("a.txt", { signal: ac.signal })).rejects.toBeDefined();
    });

    it("lets a reader stop early (break) without consuming the rest", async () => {
      const store = await fresh();
      await store.put("stop.bin", randomBytes(3 * 1024 * 1024));
      for await (const part of await store.get("stop.bin")) {
        expect(part.length).toBeGreaterThan(0);
        break;
      }
      // The store is still usable afterwards (no leaked lock, descriptor or socket blocking it).
      expect((await store.head("stop.bin"))!.size).toBe(3 * 1024 * 1024);
    });
  });
};
