/**
 * A reduce task's scratch for a mapper thread. A lab op's reduce merges on a thread of its own
 * (lib/core/pipeline/reduceTask.ts), but where it spills is the worker's (its local disk, else
 * S3: lib/aws/SpillStore.ts), and S3's client is the main thread's. So the thread's merge spills
 * through a message port: `PortScratch` is the store it sees, `serveScratch` answers it from the
 * real one. A spilled run is read back whole and in order, as a stream, and only by the merge
 * that wrote it: that is all the port offers.
 */
import type { MessagePort } from "node:worker_threads";
import { CloudmillError, ErrorCode, toCloudmillError, type SerializedError } from "../core/errors.js";
import type { BlobInfo, BlobStore } from "../core/ports.js";

export type ScratchRequest =
  | { readonly id: number; readonly kind: "put"; readonly key: string; readonly bytes: Uint8Array }
  | { readonly id: number; readonly kind: "open"; readonly key: string }
  | { readonly id: number; readonly kind: "next"; readonly stream: number }
  | { readonly id: number; readonly kind: "close"; readonly stream: number }
  | { readonly id: number; readonly kind: "delete"; readonly key: string };

/** A request as sent, before its id is given. */
type Unsent = ScratchRequest extends infer R ? (R extends unknown ? Omit<R, "id"> : never) : never;

export type ScratchReply =
  | { readonly id: number; readonly ok: true; readonly stream?: number; readonly bytes?: Uint8Array }
  | { readonly id: number; readonly ok: false; readonly error: SerializedError };

/**
 * Bytes that own their memory, to be moved to the other thread: a view into a larger buffer (a
 * pooled Buffer, a read into shared memory) would clone, or detach, all of it.
 */
const ownedBytes = (bytes: Uint8Array): Uint8Array<ArrayBuffer> => {
  const owned = new Uint8Array(bytes.byteLength);
  owned.set(bytes);
  return owned;
};

/** What serving a thread's scratch left to do once the thread is done with it. */
export interface ScratchServer {
  /** Stops answering, ends open reads and removes every run the thread wrote and did not remove. */
  close(): Promise<void>;
}

/** Answers a thread's scratch requests on `port` from `store`. */
export const serveScratch = (port: MessagePort, store: BlobStore): ScratchServer => {
  const streams = new Map<number, AsyncIterator<Uint8Array>>();
  // A thread ended mid-merge (its limit, a crash) never removes its runs: the server does.
  const written = new Set<string>();
  let nextStream = 0;
  const answer = async (request: ScratchRequest): Promise<ScratchReply> => {
    const { id } = request;
    switch (request.kind) {
      case "put":
        written.add(request.key);
        await store.put(request.key, request.bytes);
        return { id, ok: true };
      case "open": {
        const stream = nextStream++;
        streams.set(stream, (await store.get(request.key))[Symbol.asyncIterator]());
        return { id, ok: true, stream };
      }
      case "next": {
        const next = await streams.get(request.stream)?.next();
        if (!next || next.done) {
          streams.delete(request.stream);
          return { id, ok: true };
        }
        return { id, ok: true, bytes: next.value };
      }
      case "close":
        await streams.get(request.stream)?.return?.();
        streams.delete(request.stream);
        return { id, ok: true };
      case "delete":
        await store.delete(request.key);
        written.delete(request.key);
        return { id, ok: true };
    }
  };
  // Requests still being answered: a close waits for them, so that a run whose put lands after
  // the thread ended is removed too, not left behind.
  const inflight = new Set<Promise<unknown>>();
  let closing = false;
  port.on("message", (request: ScratchRequest) => {
    if (closing) return;
    const answered = answer(request).then(
      (reply) => {
        const bytes = reply.ok && reply.bytes ? ownedBytes(reply.bytes) : undefined;
        port.postMessage(bytes ? { ...reply, bytes } : reply, bytes ? [bytes.buffer] : []);
      },
      (err: unknown) => port.postMessage({ id: request.id, ok: false, error: toCloudmillError(err).toJSON() } satisfies ScratchReply),
    );
    inflight.add(answered);
    void answered.finally(() => inflight.delete(answered));
  });
  return {
    close: async () => {
      closing = true;
      await Promise.allSettled([...inflight]);
      port.close();
      const open = [...streams.values()];
      streams.clear();
      await Promise.all(open.map((s) => s.return?.().catch(() => undefined)));
      await Promise.all([...written].map((k) => store.delete(k).catch(() => undefined)));
    },
  };
};

const unsupported = (what: string): CloudmillError =>
  new CloudmillError(ErrorCode.INTERNAL, `a reduce's scratch on its thread cannot ${what}`);

/** The thread's side: a store of whole runs, written once and read back in order. */
export class PortScratch implements BlobStore {
  readonly name = "the worker's spill store";
  readonly #port: MessagePort;
  readonly #pending = new Map<number, { resolve: (r: ScratchReply & { ok: true }) => void; reject: (e: Error) => void }>();
  #nextId = 0;

  constructor(port: MessagePort) {
    this.#port = port;
    port.on("message", (reply: ScratchReply) => {
      const p = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if (reply.ok) p?.resolve(reply);
      else p?.reject(toCloudmillError(reply.error));
    });
  }

  #ask(request: Unsent): Promise<ScratchReply & { ok: true }> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      const bytes = "bytes" in request ? ownedBytes(request.bytes) : undefined;
      this.#port.postMessage({ ...request, ...(bytes ? { bytes } : {}), id }, bytes ? [bytes.buffer] : []);
    });
  }

  async put(key: string, body: Uint8Array | string | AsyncIterable<Uint8Array>): Promise<void> {
    if (typeof body !== "string" && !(body instanceof Uint8Array)) throw unsupported("take a streamed run");
    await this.#ask({ kind: "put", key, bytes: typeof body === "string" ? Buffer.from(body, "utf8") : body });
  }

  async get(key: string): Promise<AsyncIterable<Uint8Array>> {
    const { stream } = await this.#ask({ kind: "open", key });
    const ask = (kind: "next" | "close") => this.#ask({ kind, stream: stream! });
    return {
      [Symbol.asyncIterator]: () => ({
        next: async (): Promise<IteratorResult<Uint8Array>> => {
          const { bytes } = await ask("next");
          return bytes ? { done: false, value: bytes } : { done: true, value: undefined };
        },
        return: async (): Promise<IteratorResult<Uint8Array>> => {
          await ask("close");
          return { done: true, value: undefined };
        },
      }),
    };
  }

  async delete(key: string): Promise<void> {
    await this.#ask({ kind: "delete", key });
  }

  head(): Promise<BlobInfo | undefined> {
    return Promise.reject(unsupported("look a run up"));
  }

  list(): AsyncIterable<BlobInfo> {
    throw unsupported("list runs");
  }

  /** Stops listening: the thread may then end, or take the next task. */
  close(): void {
    this.#port.close();
  }
}
