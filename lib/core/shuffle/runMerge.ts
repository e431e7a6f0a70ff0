/**
 * A reduce task's merge, in bounded memory. Pairs are combined by key in memory until they
 * hold `spillBytes`; then they are sorted and written out as a run (to the worker's local disk,
 * or wherever `scratch` is), and memory starts afresh. At the end the runs, and what is still
 * in memory, are merged by key in one streaming pass (several, when there are more runs than
 * `fanIn`), so memory holds at most the spill threshold plus one read buffer per run.
 */
import { appendAll } from "../appendAll.js";
import { CloudmillError, ErrorCode } from "../errors.js";
import type { BlobStore } from "../ports.js";
import { heapify, popTop, siftDown } from "./heap.js";
import { compareKeys } from "./keyOrder.js";
import { forEachPair, pairLine, sortTable, type KeyedTable } from "./shuffleRun.js";

export interface RunMergeOptions {
  combine(a: unknown, b: unknown): unknown;
  /** A combined value as a run carries it (KeyedReduce.toJson); absent: as it is. */
  toJson?(value: unknown): unknown;
  /** Bytes of pairs (as their JSON lines) held in memory before they are spilled. */
  readonly spillBytes: number;
  /** Where spilled runs go; each merge writes under its own prefix and removes what it wrote. */
  readonly scratch: BlobStore;
  readonly prefix: string;
  /** Combining keeps every value (a reduce op's lists): memory grows by all of each run, not a share. */
  readonly gathers?: boolean;
  /** Most runs merged at once. */
  readonly fanIn?: number;
  readonly signal?: AbortSignal;
}

/** What a merge cost: bytes and runs written to scratch. */
export interface MergeStats {
  readonly spilledBytes: number;
  readonly runs: number;
}

/** Rough bytes a key costs in a Map beyond its line. */
const ENTRY_OVERHEAD = 64;

/** Pairs from a sorted run, a read at a time. */
interface Cursor {
  readonly key: string;
  readonly value: unknown;
  /** Moves to the next pair; false at the run's end. */
  advance(): Promise<boolean>;
  /** Releases its read (a file or socket) before its end: a merge that fails stops reading. */
  close(): Promise<void>;
}

const memoryCursor = async (table: KeyedTable): Promise<Cursor | undefined> => {
  let i = 0;
  if (table.length === 0) return undefined;
  const c = {
    key: table[0]![0],
    value: table[0]![1],
    advance: async () => {
      if (++i >= table.length) return false;
      c.key = table[i]![0];
      c.value = table[i]![1];
      return true;
    },
    close: async () => undefined,
  };
  return c;
};

const storedCursor = async (store: BlobStore, key: string, signal?: AbortSignal): Promise<Cursor | undefined> => {
  const reads = (await store.get(key, signal ? { signal } : {}))[Symbol.asyncIterator]();
  let pending: Buffer = Buffer.alloc(0);
  let batch: KeyedTable = [];
  let i = 0;
  /** Reads until at least one whole line is held; false at the end. */
  const fill = async (): Promise<boolean> => {
    for (;;) {
      const last = pending.lastIndexOf(0x0a);
      if (last !== -1) {
        batch = [];
        forEachPair(pending.subarray(0, last), `spilled run ${key}`, (k, v) => batch.push([k, v]));
        pending = pending.subarray(last + 1);
        i = 0;
        if (batch.length > 0) return true;
      }
      const next = await reads.next();
      if (next.done) {
        if (pending.length > 0) throw new CloudmillError(ErrorCode.INTERNAL, `spilled run ${key} ends mid-line`);
        return false;
      }
      pending = pending.length === 0 ? Buffer.from(next.value) : Buffer.concat([pending, next.value]);
    }
  };
  if (!(await fill())) return undefined;
  const c = {
    key: batch[0]![0],
    value: batch[0]![1],
    advance: async () => {
      if (++i >= batch.length && !(await fill())) return false;
      c.key = batch[i]![0];
      c.value = batch[i]![1];
      return true;
    },
    close: async () => {
      await reads.return?.();
    },
  };
  return c;
};

/**
 * Merges sorted cursors by key, combining equal keys, and hands each key once to emit, in key
 * order. Equal keys combine in the cursors' order, so values reach `combine` in the order their
 * runs were added (a reduce op's lists keep input order).
 */
const mergeCursors = async (
  cursors: Cursor[],
  combine: (a: unknown, b: unknown) => unknown,
  emit: (key: string, value: unknown) => void | Promise<void>,
): Promise<void> => {
  const order = new Map(cursors.map((c, i) => [c, i]));
  const heap = [...cursors];
  const before = (a: Cursor, b: Cursor): boolean => {
    const c = compareKeys(a.key, b.key);
    return c < 0 || (c === 0 && order.get(a)! < order.get(b)!);
  };
  heapify(heap, before);
  let key: string | undefined;
  let value: unknown;
  while (heap.length > 0) {
    const top = heap[0]!;
    if (key === top.key) value = combine(value, top.value);
    else {
      if (key !== undefined) await emit(key, value);
      key = top.key;
      value = top.value;
    }
    if (await top.advance()) siftDown(heap, 0, before);
    else popTop(heap, before);
  }
  if (key !== undefined) await emit(key, value);
};

export class RunMerge {
  readonly #options: RunMergeOptions;
  #held = new Map<string, unknown>();
  #heldBytes = 0;
  readonly #runs: string[] = [];
  #spilledBytes = 0;
  #written = 0;

  constructor(options: RunMergeOptions) {
    if (!(options.spillBytes > 0)) throw new CloudmillError(ErrorCode.INTERNAL, "spillBytes must be positive");
    this.#options = options;
  }

  /** Adds one run's bytes (`[key, value]` lines); spills when memory holds the threshold. */
  async addRun(bytes: Buffer, where: string): Promise<void> {
    const { combine } = this.#options;
    forEachPair(bytes, where, (key, value) => {
      if (this.#held.has(key)) this.#held.set(key, combine(this.#held.get(key), value));
      else {
        this.#held.set(key, value);
        this.#heldBytes += key.length * 2 + ENTRY_OVERHEAD;
      }
    });
    // Values grow as they combine: count the run's bytes too, so a few hot keys still spill.
    this.#heldBytes += this.#options.gathers ? bytes.length : bytes.length >> 2;
    if (this.#heldBytes >= this.#options.spillBytes) await this.#spill();
  }

  async #spill(): Promise<void> {
    const table = sortTable([...this.#held]);
    this.#held = new Map();
    this.#heldBytes = 0;
    await this.#writeRun(async (write) => {
      for (const [k, v] of table) await write(this.#line(k, v));
    });
  }

  #line(key: string, value: unknown): string {
    const { toJson } = this.#options;
    return pairLine(key, toJson ? toJson(value) : value);
  }

  /** Writes a run from what `fill` writes, in pieces of about a MiB joined into one object. */
  async #writeRun(fill: (write: (line: string) => Promise<void>) => Promise<void>): Promise<string> {
    const key = `${this.#options.prefix}run-${String(this.#written++).padStart(5, "0")}`;
    const pieces: Buffer[] = [];
    let text = "";
    await fill(async (line) => {
      text += line;
      if (text.length >= 1 << 20) {
        pieces.push(Buffer.from(text, "utf8"));
        text = "";
      }
    });
    pieces.push(Buffer.from(text, "utf8"));
    const bytes = Buffer.concat(pieces);
    await this.#options.scratch.put(key, bytes);
    this.#spilledBytes += bytes.length;
    this.#runs.push(key);
    return key;
  }

  /** Hands every key, combined, to emit in key order; removes the runs it wrote. */
  async finish(emit: (key: string, value: unknown) => void | Promise<void>): Promise<MergeStats> {
    const { scratch, combine, signal } = this.#options;
    const fanIn = Math.max(2, this.#options.fanIn ?? 64);
    const opened: Cursor[] = [];
    try {
      const inMemory = sortTable([...this.#held]);
      this.#held = new Map();
      const open = async (keys: readonly string[]): Promise<Cursor[]> => {
        // Every read that opened is closed at the end, even when another failed to open.
        const settled = await Promise.allSettled(keys.map((k) => storedCursor(scratch, k, signal)));
        const cursors = settled.flatMap((r) => (r.status === "fulfilled" && r.value ? [r.value] : []));
        appendAll(opened, cursors);
        const failed = settled.find((r) => r.status === "rejected");
        if (failed) throw failed.reason;
        return cursors;
      };
      // Too many runs to read at once: merge them a fan-in at a time into longer runs first.
      let pending = [...this.#runs];
      while (pending.length + 1 > fanIn) {
        // Merge just enough runs that the rest, the merged one and memory fit one merge.
        const take = Math.min(fanIn, pending.length + 2 - fanIn);
        const group = pending.slice(0, take);
        const cursors = await open(group);
        // The merged run takes its group's place: runs stay in the order they were added.
        pending = [
          await this.#writeRun((write) => mergeCursors(cursors, combine, (k, v) => write(this.#line(k, v)))),
          ...pending.slice(take),
        ];
        // Read to their ends: gone now, so scratch holds about the partition once, not once per pass.
        await this.#remove(group);
      }
      const cursors = await open(pending);
      const memory = await memoryCursor(inMemory);
      if (memory) cursors.push(memory);
      await mergeCursors(cursors, combine, emit);
      return { spilledBytes: this.#spilledBytes, runs: this.#written };
    } finally {
      // A merge that failed part-way leaves its reads open: closed, a removed run frees its disk at once.
      await Promise.all(opened.map((c) => c.close().catch(() => undefined)));
      await this.discard();
    }
  }

  /** Removes every run written so far: a merge that fails or is abandoned leaves none behind. */
  async discard(): Promise<void> {
    await this.#remove([...this.#runs]);
  }

  async #remove(runs: readonly string[]): Promise<void> {
    for (const k of runs) {
      const i = this.#runs.indexOf(k);
      if (i >= 0) this.#runs.splice(i, 1);
    }
    await Promise.all(runs.map((k) => this.#options.scratch.delete(k).catch(() => undefined)));
  }
}
