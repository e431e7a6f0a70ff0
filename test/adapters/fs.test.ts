import { mkdtemp, rm, truncate, appendFile, writeFile, mkdir, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { collect, describeBlobStoreContract } from "../contract/blobStoreContract.js";

const tempRoot = (): Promise<string> => mkdtemp(join(tmpdir(), "cloudmill-fs-"));

describeBlobStoreContract("FsBlobStore", async () => {
  const root = await tempRoot();
  return { store: new FsBlobStore(root), cleanup: () => rm(root, { recursive: true, force: true }) };
});

describe("FsBlobStore", () => {
  const roots: string[] = [];
  const fresh = async (): Promise<{ root: string; store: FsBlobStore }> => {
    const root = await tempRoot();
    roots.push(root);
    return { root, store: new FsBlobStore(root) };
  };
  afterEach(async () => {
    await Promise.all(roots.splice(0).map((r) => rm(r, { recursive: true, force: true })));
  });

  it.each(["../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "", "a/", "nul\0byte", ".cmtmp-0123456789abcdef"])(
    "refuses the key %j with INVALID_SPEC",
    async (key) => {
      const { store } = await fresh();
      for (const op of [() => store.put(key, "x"), () => store.get(key), () => store.head(key), () => store.delete(key)]) {
        const err = await op().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(CloudmillError);
        expect((err as CloudmillError).code).toBe(ErrorCode.INVALID_SPEC);
      }
    },
  );

  it("names a file rooted at / (local inputs) by its own path in errors: /tmp/x, not //tmp/x", async () => {
    const { root, store } = await fresh();
    await store.put("gone.txt", "x\n");
    const abs = join(root, "gone.txt");
    const slash = new FsBlobStore("/");
    const etag = (await slash.head(abs.slice(1)))!.etag;
    await writeFile(abs, "changed\n");
    await expect(slash.get(abs.slice(1), { etag })).rejects.toThrow(new RegExp(`^${abs} changed since the job listed its inputs`));
    await expect(slash.get(`${abs.slice(1)}.missing`)).rejects.toThrow(`${abs}.missing does not exist`);
  });

  it("refuses a prefix that would leave the root", async () => {
    const { store } = await fresh();
    const walk = async (): Promise<void> => {
      for await (const _ of store.list("../")) void _;
    };
    await expect(walk()).rejects.toMatchObject({ code: ErrorCode.INVALID_SPEC });
  });

  it("writes files under the root and creates directories", async () => {
    const { root, store } = await fresh();
    await store.put("a/b/c.txt", "hi");
    const direct = new FsBlobStore(join(root, "a"));
    expect((await collect(await direct.get("b/c.txt"))).toString()).toBe("hi");
    expect(store.name).toBe(root);
  });

  it("gives a quoted hex ETag that changes on touch-free overwrite", async () => {
    const { store } = await fresh();
    await store.put("k", "same");
    const a = (await store.head("k"))!.etag;
    expect(a).toMatch(/^"[0-9a-f]{32}"$/);
    await store.put("k", "same");
    expect((await store.head("k"))!.etag).not.toBe(a);
  });

  it("skips temp files of puts in progress and lists nothing under a missing root", async () => {
    const { root, store } = await fresh();
    await store.put("d/real", "1");
    await writeFile(join(root, "d", ".cmtmp-0123456789abcdef"), "partial");
    const keys: string[] = [];
    for await (const info of store.list("")) keys.push(info.key);
    expect(keys).toEqual(["d/real"]);
    const none = new FsBlobStore(join(root, "no", "such", "dir"));
    for await (const _ of none.list("")) throw new Error("listed something under a missing root");
  });

  it("lists files behind symlinks but not directories", async () => {
    const { root, store } = await fresh();
    await store.put("target.txt", "t");
    await mkdir(join(root, "sub"));
    await symlink(join(root, "target.txt"), join(root, "link.txt"));
    await symlink(join(root, "sub"), join(root, "linkdir"));
    const keys: string[] = [];
    for await (const info of store.list("")) keys.push(info.key);
    expect(keys).toEqual(["link.txt", "target.txt"]);
  });

  it("treats a directory as no object", async () => {
    const { store } = await fresh();
    await store.put("dir/file", "x");
    expect(await store.head("dir")).toBeUndefined();
    await expect(store.get("dir")).rejects.toMatchObject({ code: ErrorCode.INPUT_NOT_FOUND });
    await store.delete("dir");
    expect(await store.head("dir/file")).toBeDefined();
  });

  it("fails with INVALID_SPEC when a key needs a file to be a directory: trying again would give the same answer", async () => {
    const { store } = await fresh();
    await store.put("a", "file");
    await expect(store.put("a/b", "x")).rejects.toMatchObject({
      code: ErrorCode.INVALID_SPEC,
      message: expect.stringContaining("a file and a folder of one name"),
    });
  });

  it("streams in blocks of at most 1 MiB", async () => {
    const { store } = await fresh();
    await store.put("big", Buffer.alloc(3 * 1024 * 1024 + 5, 7));
    const sizes: number[] = [];
    for await (const part of await store.get("big", { start: 1 })) sizes.push(part.length);
    expect(sizes).toEqual([1024 * 1024, 1024 * 1024, 1024 * 1024, 4]);
  });

  it("with reuseBuffers, reads on into two buffers, each chunk intact until the next is asked for", async () => {
    const { store } = await fresh();
    const data = Buffer.alloc(4 * 1024 * 1024 + 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 20)) & 0xff;
    await store.put("big", data);
    const copies: Buffer[] = [];
    const memory = new Set<ArrayBufferLike>();
    for await (const part of await store.get("big", { start: 1, reuseBuffers: true })) {
      copies.push(Buffer.from(part));
      memory.add(part.buffer);
    }
    expect(Buffer.concat(copies).equals(data.subarray(1))).toBe(true);
    expect(copies.length).toBe(5);
    expect(memory.size).toBe(2);
    // Without the option every chunk is the caller's own.
    const own = new Set<ArrayBufferLike>();
    for await (const part of await store.get("big", { start: 1 })) own.add(part.buffer);
    expect(own.size).toBe(5);
  });

  it("detects an in-place edit during a read (INPUT_CHANGED)", async () => {
    const { root, store } = await fresh();
    await store.put("grow.txt", Buffer.alloc(3 * 1024 * 1024, 1));
    const stream = await store.get("grow.txt");
    const read = async (): Promise<void> => {
      let first = true;
      for await (const _ of stream) {
        if (first) await appendFile(join(root, "grow.txt"), "more");
        first = false;
      }
    };
    await expect(read()).rejects.toMatchObject({ code: ErrorCode.INPUT_CHANGED });
  });

  it("detects a truncation during a read (INPUT_CHANGED)", async () => {
    const { root, store } = await fresh();
    await store.put("shrink.txt", Buffer.alloc(4 * 1024 * 1024, 1));
    const read = async (): Promise<void> => {
      let first = true;
      for await (const _ of await store.get("shrink.txt")) {
        if (first) await truncate(join(root, "shrink.txt"), 10);
        first = false;
      }
    };
    await expect(read()).rejects.toMatchObject({ code: ErrorCode.INPUT_CHANGED });
  });

  it("keeps reading the old bytes when a put replaces the file mid-read (the read was pinned)", async () => {
    const { store } = await fresh();
    const old = Buffer.alloc(3 * 1024 * 1024, 1);
    await store.put("swap.bin", old);
    const parts: Uint8Array[] = [];
    let first = true;
    for await (const part of await store.get("swap.bin")) {
      parts.push(part);
      if (first) await store.put("swap.bin", Buffer.alloc(3 * 1024 * 1024, 2));
      first = false;
    }
    expect(Buffer.concat(parts).equals(old)).toBe(true);
  });

  it("stops a read when its signal aborts", async () => {
    const { store } = await fresh();
    await store.put("abort.bin", Buffer.alloc(3 * 1024 * 1024));
    const ac = new AbortController();
    const read = async (): Promise<void> => {
      for await (const _ of await store.get("abort.bin", { signal: ac.signal })) ac.abort();
    };
    await expect(read()).rejects.toThrow();
  });
});
