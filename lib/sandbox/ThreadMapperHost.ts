/**
 * Runs ops' mappers on threads, one chunk at a time per thread, for a worker whose main thread
 * must stay free: it reads the chunk and hands the blocks over, keeps the chunk's heartbeat, and
 * ends the thread when the chunk is past its time limit (TASK_TIMEOUT) or the worker is stopped.
 * A lab op's merge task merges on such a thread too, under the same limits, and so does its
 * reduce task, spilling through the main thread's store (scratchPort.ts). Threads that
 * finished their task are kept for the next one.
 */
import { MessageChannel, Worker, type TransferListItem } from "node:worker_threads";
import { CloudmillError, ErrorCode, toCloudmillError } from "../core/errors.js";
import {
  taskTimeoutError,
  type MapperHost,
  type RemoteMapped,
  type RemoteMapper,
  type RemoteMapperRequest,
  type RemoteRequest,
  type RemoteMerged,
  type RemoteMerger,
  type RemoteMergeRequest,
  type RemoteReducer,
  type RemoteReduceRequest,
  type RemoteFolder,
  type RemoteFoldRequest,
} from "../core/pipeline/mappers.js";
import type { BlobStore } from "../core/ports.js";
import type { RowsWritten } from "../core/shuffle/keyedRows.js";
import { serveScratch } from "./scratchPort.js";
import type { SpanReadings } from "../core/pipeline/spans.js";
import type { RecordBlock } from "../core/records/alignedBlocks.js";
import type { MapperReply, MapperRequest, MapperThreadData } from "./mapperProtocol.js";
import { heapLimits, outOfMemory } from "./heapLimits.js";
import { threadEntry } from "./threadEntry.js";
import { endThread, STUCK_GRACE_MS } from "./threadExit.js";

export interface ThreadMapperHostOptions {
  /** The op modules the process loaded (the threads load the same). */
  readonly opsModules: readonly string[];
  /** Longest one chunk's mapping may take. */
  readonly taskTimeoutSeconds: number;
  /** Heap one chunk's thread may use, in MiB. Default: V8's own limit. */
  readonly memoryMiB?: number;
  /** The most heap a job may ask a thread for (its taskMemoryMiB is capped here). Default: no cap. */
  readonly maxMemoryMiB?: number;
  /** The thread entry file. Default: mapperThread.js beside this module. */
  readonly entry?: string;
}

/** One thread, asked one thing at a time. */
class MapperThread {
  readonly worker: Worker;
  #pending: { resolve: (r: MapperReply) => void; reject: (e: CloudmillError) => void } | undefined;
  #ended: CloudmillError | undefined;

  constructor(
    entry: string,
    data: MapperThreadData,
    readonly memoryMiB: number | undefined,
    readonly of: string,
  ) {
    this.worker = new Worker(entry, { workerData: data, ...(memoryMiB !== undefined ? { resourceLimits: heapLimits(memoryMiB) } : {}) });
    this.worker.on("message", (reply: MapperReply) => {
      const p = this.#pending;
      this.#pending = undefined;
      p?.resolve(reply);
    });
    this.worker.on("error", (err: Error & { code?: string }) =>
      this.end(
        err.code === "ERR_WORKER_OUT_OF_MEMORY"
          ? outOfMemory(memoryMiB, of)
          : new CloudmillError(ErrorCode.ENVIRONMENT, `the op's thread crashed: ${err.message}`),
      ),
    );
    this.worker.on("exit", (code) => this.end(new CloudmillError(ErrorCode.ENVIRONMENT, `the op's thread exited (code ${code})`)));
  }

  get alive(): boolean {
    return this.#ended === undefined;
  }

  /** Ends the thread; a request in progress rejects with `why`. */
  end(why: CloudmillError): void {
    if (this.#ended) return;
    this.#ended = why;
    const p = this.#pending;
    this.#pending = undefined;
    p?.reject(why);
    void endThread(this.worker, why.code === ErrorCode.TASK_TIMEOUT ? STUCK_GRACE_MS : undefined);
  }

  async call(request: MapperRequest, transfer: TransferListItem[] = []): Promise<MapperReply> {
    if (this.#ended) throw this.#ended;
    const reply = await new Promise<MapperReply>((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.worker.postMessage(request, transfer);
    });
    if (reply.kind === "error") throw toCloudmillError(reply.error);
    return reply;
  }
}

/** What `knows` is asked under: the job's limits, its name for a timeout's message, and the run's signal. */
export interface KnowsOptions {
  readonly what: string;
  readonly memoryMiB?: number | undefined;
  readonly timeoutSeconds?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

export class ThreadMapperHost implements MapperHost {
  readonly #data: MapperThreadData;
  readonly #entry: string;
  readonly #timeoutMs: number;
  readonly #memoryMiB: number | undefined;
  readonly #maxMemoryMiB: number | undefined;
  readonly #idle: MapperThread[] = [];
  readonly #all = new Set<MapperThread>();

  constructor(options: ThreadMapperHostOptions) {
    this.#data = { opsModules: [...options.opsModules] };
    this.#entry = options.entry ?? threadEntry(import.meta.url, "mapperThread");
    this.#timeoutMs = options.taskTimeoutSeconds * 1000;
    this.#memoryMiB = options.memoryMiB;
    this.#maxMemoryMiB = options.maxMemoryMiB;
  }

  get taskTimeoutSeconds(): number {
    return this.#timeoutMs / 1000;
  }

  /** A live idle thread of this heap limit, else a new one. */
  #acquire(asked: number | undefined): MapperThread {
    const memoryMiB = asked === undefined ? this.#memoryMiB : Math.min(asked, this.#maxMemoryMiB ?? asked);
    const of =
      asked === undefined
        ? "the worker's share of its container"
        : memoryMiB === asked
          ? "taskMemoryMiB"
          : `taskMemoryMiB ${asked}, capped at the worker's share of its container`;
    for (let i = this.#idle.length - 1; i >= 0; i--) if (!this.#idle[i]!.alive) this.#idle.splice(i, 1);
    const at = this.#idle.findLastIndex((t) => t.memoryMiB === memoryMiB && t.of === of);
    let thread = at >= 0 ? this.#idle.splice(at, 1)[0] : undefined;
    if (!thread) {
      // Idle threads of other limits would only pile up (and count against the container's memory).
      for (const idle of this.#idle.splice(0)) {
        this.#all.delete(idle);
        void endThread(idle.worker);
      }
      thread = new MapperThread(this.#entry, this.#data, memoryMiB, of);
      this.#all.add(thread);
    }
    thread.worker.ref();
    return thread;
  }

  /** A thread for one task, ended at the task's time limit or when its signal aborts; `what` names the task. */
  #session(request: RemoteRequest, what: string) {
    const thread = this.#acquire(request.memoryMiB);
    const seconds = request.timeoutSeconds ?? this.#timeoutMs / 1000;
    const ended = new AbortController();
    const end = (why: CloudmillError): void => {
      thread.end(why);
      ended.abort(why);
    };
    const timer = setTimeout(() => end(taskTimeoutError(seconds, what)), seconds * 1000);
    const onAbort = (): void => end(toCloudmillError(request.signal!.reason));
    request.signal?.addEventListener("abort", onAbort, { once: true });
    // Aborted before this open (a reading moved to a thread after its task was stopped): no event comes.
    if (request.signal?.aborted) onAbort();
    let finished = false;
    return {
      thread,
      signal: ended.signal,
      finished: (): void => {
        finished = true;
      },
      close: (): void => {
        clearTimeout(timer);
        request.signal?.removeEventListener("abort", onAbort);
        if (!finished) thread.end(new CloudmillError(ErrorCode.CANCELLED, `${what} ended before its thread finished`));
        if (thread.alive) {
          thread.worker.unref();
          this.#idle.push(thread);
        } else this.#all.delete(thread);
      },
    };
  }

  open(request: RemoteMapperRequest): RemoteMapper {
    const session = this.#session(request, "the chunk");
    const { thread } = session;
    const opened = thread.call({ kind: "open", op: request.op, params: request.params, ctx: request.ctx });
    opened.catch(() => undefined);
    return {
      signal: session.signal,
      block: async (block: RecordBlock): Promise<void> => {
        await opened;
        // A copy the thread can own: the store reads on into the block's memory.
        const bytes = new Uint8Array(block.bytes.length);
        bytes.set(block.bytes);
        await thread.call({ kind: "block", bytes, offset: block.offset, first: block.first }, [bytes.buffer]);
      },
      finish: async (): Promise<RemoteMapped> => {
        await opened;
        const reply = await thread.call({ kind: "finish" });
        if (reply.kind !== "finished") throw new CloudmillError(ErrorCode.INTERNAL, "mapper thread: finish was not answered");
        session.finished();
        return reply;
      },
      close: session.close,
    };
  }

  merge(request: RemoteMergeRequest): RemoteMerger {
    const session = this.#session(request, "the merge task");
    const { thread } = session;
    const opened = thread.call({ kind: "mergeOpen", op: request.op, params: request.params, twoWays: request.twoWays });
    opened.catch(() => undefined);
    return {
      signal: session.signal,
      add: async (span: SpanReadings): Promise<void> => {
        await opened;
        await thread.call({ kind: "mergeAdd", span });
      },
      finish: async (): Promise<RemoteMerged> => {
        await opened;
        const reply = await thread.call({ kind: "mergeFinish" });
        if (reply.kind !== "merged") throw new CloudmillError(ErrorCode.INTERNAL, "mapper thread: mergeFinish was not answered");
        session.finished();
        return reply.inside ? { outside: reply.outside, inside: reply.inside } : { outside: reply.outside };
      },
      close: session.close,
    };
  }

  reduce(request: RemoteReduceRequest, scratch: BlobStore): RemoteReducer {
    const session = this.#session(request, request.what);
    const { thread } = session;
    const channel = new MessageChannel();
    const served = serveScratch(channel.port1, scratch);
    const { op, params, prefix } = request;
    // What a merge holds before it spills is an estimate, and the heap holds several times it:
    // under a heap limit it spills by an eighth of the limit at most, rather than run out.
    const spillBytes =
      thread.memoryMiB === undefined ? request.spillBytes : Math.min(request.spillBytes, Math.floor((thread.memoryMiB * 2 ** 20) / 8));
    const opened = thread.call({ kind: "reduceOpen", op, params, spillBytes, prefix, scratch: channel.port2 }, [channel.port2]);
    opened.catch(() => undefined);
    return {
      signal: session.signal,
      addRun: async (bytes: Uint8Array, where: string): Promise<void> => {
        await opened;
        const owned = new Uint8Array(bytes.byteLength);
        owned.set(bytes);
        await thread.call({ kind: "reduceRun", bytes: owned, where }, [owned.buffer]);
      },
      finish: async (piece: (bytes: Buffer) => Promise<void>): Promise<RowsWritten> => {
        await opened;
        for (;;) {
          const reply = await thread.call({ kind: "reduceNext" });
          if (reply.kind === "reduced") {
            session.finished();
            return { records: reply.records, spilledBytes: reply.spilledBytes };
          }
          if (reply.kind !== "rows") throw new CloudmillError(ErrorCode.INTERNAL, "mapper thread: reduceNext was not answered");
          await piece(Buffer.from(reply.bytes.buffer, reply.bytes.byteOffset, reply.bytes.byteLength));
        }
      },
      close: async (): Promise<void> => {
        session.close();
        await served.close();
      },
    };
  }

  /**
   * Whether the threads' modules define `op` with `digest`: a caller whose registry may hold ops
   * from elsewhere asks before folding there, and the thread that answered is kept for the fold.
   */
  async knows(op: string, digest: string, asked: KnowsOptions): Promise<boolean> {
    const thread = this.#acquire(asked.memoryMiB);
    // The answer waits for the modules to load, the lab's own start-up code included: under the
    // task's time limit, and ended with the run, as a fold's calls are.
    const seconds = asked.timeoutSeconds ?? this.#timeoutMs / 1000;
    const timer = setTimeout(() => thread.end(taskTimeoutError(seconds, `${asked.what}'s start`)), seconds * 1000);
    const onAbort = () => thread.end(new CloudmillError(ErrorCode.CANCELLED, "interrupted"));
    asked.signal?.addEventListener("abort", onAbort, { once: true });
    if (asked.signal?.aborted) onAbort();
    try {
      const reply = await thread.call({ kind: "knows", op, digest });
      return reply.kind === "value" && reply.value === true;
    } finally {
      clearTimeout(timer);
      asked.signal?.removeEventListener("abort", onAbort);
      thread.worker.unref();
      if (thread.alive) this.#idle.push(thread);
      else this.#all.delete(thread);
    }
  }

  fold(request: RemoteFoldRequest): RemoteFolder {
    const thread = this.#acquire(request.memoryMiB);
    const seconds = request.timeoutSeconds ?? this.#timeoutMs / 1000;
    /** One call, ended with the thread when it overruns: a fold may wait for parts, but no call into op code may hang. */
    const call = async (what: string, message: MapperRequest): Promise<MapperReply> => {
      const timer = setTimeout(() => thread.end(taskTimeoutError(seconds, `${request.what}'s ${what}`)), seconds * 1000);
      try {
        return await thread.call(message);
      } finally {
        clearTimeout(timer);
      }
    };
    const answer = (reply: MapperReply): unknown => {
      if (reply.kind !== "value") throw new CloudmillError(ErrorCode.INTERNAL, "mapper thread: a fold's value was not answered");
      return reply.value;
    };
    // The fold's thread waits between calls: it keeps no process alive meanwhile.
    const opened = call("start", { kind: "foldOpen", op: request.op, params: request.params }).finally(() => thread.worker.unref());
    opened.catch(() => undefined);
    const asked = async (what: string, message: MapperRequest): Promise<MapperReply> => {
      await opened;
      thread.worker.ref();
      try {
        return await call(what, message);
      } finally {
        thread.worker.unref();
      }
    };
    return {
      add: async (partial) => void (await asked("merge", { kind: "foldAdd", partial })),
      value: async () => answer(await asked("merge", { kind: "foldValue" })),
      finalize: async (partial, inputCount, names) =>
        answer(await asked("finalize", { kind: "finalize", partial, inputCount, names: new Map(names) })),
      close: () => {
        if (thread.alive) this.#idle.push(thread);
        else this.#all.delete(thread);
      },
    };
  }

  async close(): Promise<void> {
    const all = [...this.#all];
    this.#all.clear();
    this.#idle.length = 0;
    await Promise.all(all.map((t) => endThread(t.worker)));
  }
}
