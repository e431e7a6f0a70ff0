/**
 * Where one reading of a chunk maps on the fleet: on a mapper thread, or, for a built-in op's
 * small uncompressed range, on the worker's main thread. A thread's three round trips (open,
 * block, finish) cost a tiny chunk, or a small object of a packed one, more CPU than mapping it;
 * a built-in op is trusted and linear in its input, so a few hundred KiB of it is over in a
 * moment. A compressed input may decode to far more than its stored bytes, and a lab's op may
 * never return or allocate without bound: those keep their thread.
 *
 * The bytes a reading maps can still run past its range (the last record is read to its end,
 * up to maxRecordBytes), so a reading mapped on the main thread keeps a copy of what it was fed:
 * past INLINE_FEED_BYTES it moves to a thread, which maps those bytes again before the rest (a
 * mapper is a pure function of its blocks). Either way the reading has the chunk's time limit
 * from its start, as it had on a thread: a read that stalls cannot hold the worker's slot.
 */
import { CloudmillError, ErrorCode, toCloudmillError } from "../errors.js";
import type { OnBadRecord } from "../job/spec.js";
import type { ChunkMapper } from "../ops/types.js";
import type { RecordBlock } from "../records/alignedBlocks.js";
import { taskTimeoutError, type MapperHost, type RemoteMapped, type RemoteMapper, type RemoteMapperRequest } from "./mappers.js";

/** A range a built-in op may map on the worker's main thread, in stored bytes. */
export const INLINE_MAP_BYTES = 64 * 1024;
/** Bytes a reading maps on the main thread before it moves to a thread (a long last record). */
export const INLINE_FEED_BYTES = 4 * INLINE_MAP_BYTES;

/** One reading's mapper: blocks in, the partial out. */
export interface LaneMapper {
  block(block: RecordBlock): Promise<void> | void;
  finish(): Promise<RemoteMapped> | RemoteMapped;
  /** Gives its thread back (or ends it, if the reading did not finish), and ends its time limit. */
  close(): void;
  /** Aborted when the reading is past the chunk's time limit or its thread ended: the read ends too. */
  readonly stop: AbortSignal;
}

export interface FleetLaneOptions {
  readonly host: MapperHost;
  /** What a thread is asked to map: the op by name, its raw params, the job's limits. */
  readonly request: RemoteMapperRequest;
  /** The op's mapper on this thread, reporting bad records through `bad`. */
  readonly onThisThread: (bad: (error: CloudmillError) => void) => ChunkMapper<unknown>;
  readonly onBadRecord: OnBadRecord;
  /** The reader's own skips (records too long to read), added to the mapper's. */
  readonly readerSkips: () => { readonly skipped: number; readonly first?: CloudmillError | undefined };
  /**
   * Whether the reading may map on this thread: known at once, or (an object read whole, whose
   * first bytes tell whether it is compressed) asked at its first block.
   */
  readonly inline: boolean | (() => boolean);
}

/** A reading's mapper on a thread or, while it is small, on this one; see the module comment. */
export const fleetLaneMapper = (options: FleetLaneOptions): LaneMapper => {
  const { host, request, onBadRecord, readerSkips } = options;
  const stop = new AbortController();
  const seconds = request.timeoutSeconds ?? host.taskTimeoutSeconds;
  const started = Date.now();
  const timer = setTimeout(() => stop.abort(taskTimeoutError(seconds)), seconds * 1000);

  let remote: RemoteMapper | undefined;
  const openRemote = (): RemoteMapper => {
    // A thread taken on part-way has what is left of the reading's time: its own limit ends it.
    const left = Math.max(1, Math.ceil(seconds - (Date.now() - started) / 1000));
    let opened: RemoteMapper;
    try {
      opened = host.open(left < seconds ? { ...request, timeoutSeconds: left } : request);
    } catch (err) {
      // No thread could start: the machine's fault, retried, never kept as a reading's data error.
      const e = toCloudmillError(err);
      throw e.code === ErrorCode.INTERNAL ? new CloudmillError(ErrorCode.ENVIRONMENT, `mapper thread did not start: ${e.message}`) : e;
    }
    if (opened.signal.aborted) stop.abort(opened.signal.reason);
    else opened.signal.addEventListener("abort", () => stop.abort(opened.signal.reason), { once: true });
    remote = opened;
    return opened;
  };

  interface Inline {
    readonly mapper: ChunkMapper<unknown>;
    /** Copies of the blocks fed, for a thread to map again. */
    readonly fed: RecordBlock[];
    bytes: number;
    skipped: number;
    first?: CloudmillError;
  }
  let inline: Inline | undefined;
  const openInline = (): Inline => {
    const state: Inline = {
      fed: [],
      bytes: 0,
      skipped: 0,
      mapper: options.onThisThread((error) => {
        if (onBadRecord === "fail") throw error;
        state.skipped++;
        state.first ??= error;
      }),
    };
    inline = state;
    return state;
  };

  let decided = false;
  const decide = (): void => {
    if (decided) return;
    decided = true;
    const onThis = typeof options.inline === "function" ? options.inline() : options.inline;
    if (onThis) openInline();
    else openRemote();
  };
  // Known at once: open now, so a thread starts beside the first read and an op's bad params fail here.
  if (typeof options.inline === "boolean") {
    try {
      decide();
    } catch (err) {
      // The lane was never handed out, so nothing would close it.
      clearTimeout(timer);
      throw err;
    }
  }

  const withReaderSkips = (mapped: { partial: unknown; skipped: number; first?: CloudmillError | undefined }): RemoteMapped => {
    const reader = readerSkips();
    const first = mapped.first ?? reader.first;
    return { partial: mapped.partial, skipped: mapped.skipped + reader.skipped, ...(first ? { firstSkipped: first.toJSON() } : {}) };
  };

  return {
    stop: stop.signal,
    async block(block) {
      decide();
      if (inline) {
        if (inline.bytes + block.bytes.length <= INLINE_FEED_BYTES) {
          inline.mapper.block(block);
          // A copy: the store reads on into the block's memory.
          inline.fed.push({ ...block, bytes: Buffer.from(block.bytes) });
          inline.bytes += block.bytes.length;
          return;
        }
        // Too much for this thread: a thread maps it all, from the first block.
        const { fed } = inline;
        inline = undefined;
        const moved = openRemote();
        for (const earlier of fed) await moved.block(earlier);
      }
      await remote!.block(block);
    },
    async finish() {
      decide();
      if (inline) return withReaderSkips({ partial: inline.mapper.finish(), skipped: inline.skipped, first: inline.first });
      const mapped = await remote!.finish();
      const reader = readerSkips();
      return {
        partial: mapped.partial,
        skipped: mapped.skipped + reader.skipped,
        ...(mapped.firstSkipped ? { firstSkipped: mapped.firstSkipped } : reader.first ? { firstSkipped: reader.first.toJSON() } : {}),
      };
    },
    close() {
      clearTimeout(timer);
      remote?.close();
    },
  };
};
