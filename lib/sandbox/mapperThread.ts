/**
 * A mapper thread: loads the process's op modules, then maps the chunks it is sent, one at a
 * time: `open` makes the op's mapper, each `block` feeds it, `finish` returns its partial. It
 * merges a merge task's spans the same way (`mergeOpen`, `mergeAdd`, `mergeFinish`). Every
 * request gets one reply. The host ends the thread when a task overruns its time.
 */
import { parentPort, workerData } from "node:worker_threads";
import { opsRegistry } from "../core/ops/opModules.js";
import type { AnyOp, ChunkMapper, MapContext, Merger } from "../core/ops/types.js";
import { enableLinearRegExp } from "./linearRegExp.js";
import { isExitRequest, type ExitRequest } from "./threadExit.js";
import type { MapperThreadData, MapperReply, MapperRequest } from "./mapperProtocol.js";
import { ReadingChain, spanOfReadings } from "../core/pipeline/spans.js";
import { CloudmillError, ErrorCode, toCloudmillError, type SerializedError } from "../core/errors.js";
import { RunMerge } from "../core/shuffle/runMerge.js";
import { mergeRows } from "../core/shuffle/keyedRows.js";
import { PortScratch } from "./scratchPort.js";

enableLinearRegExp();
const port = parentPort!;
const registry = opsRegistry((workerData as MapperThreadData).opsModules);

let mapper: ChunkMapper<unknown> | undefined;
let skipped = 0;
let firstSkipped: SerializedError | undefined;
/** A merge task's chains: from outside quotes before its first span, and from inside when asked. */
let merging: { outside: ReadingChain; inside?: ReadingChain } | undefined;

/** A job's fold for the reducer: its op, parsed params and merger. */
let folding: { op: AnyOp; params: unknown; merger: Merger<unknown> } | undefined;

/** A reduce task's merge: its runs go in, then its rows come out a piece per request. */
let reducing:
  | { merge: RunMerge; row: (key: string, value: unknown) => unknown; scratch: PortScratch; next?: () => Promise<MapperReply> }
  | undefined;

/**
 * Runs the merge to its end, a piece ahead of the host: each call returns the next piece, or
 * what was written once there are no more. The merge waits while a piece is not taken, so
 * memory holds at most two.
 */
const rowsAsAsked = (merge: RunMerge, row: (key: string, value: unknown) => unknown): (() => Promise<MapperReply>) => {
  const pieces: Buffer[] = [];
  let wake: (() => void) | undefined;
  let room: (() => void) | undefined;
  let end: { readonly ok: MapperReply } | { readonly failed: unknown } | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  mergeRows(merge, row, async (piece) => {
    pieces.push(piece);
    notify();
    if (pieces.length > 1) await new Promise<void>((resolve) => (room = resolve));
  }).then(
    ({ records, spilledBytes }) => {
      end = { ok: { kind: "reduced", records, spilledBytes } };
      notify();
    },
    (failed: unknown) => {
      end = { failed };
      notify();
    },
  );
  return async () => {
    for (;;) {
      const piece = pieces.shift();
      if (piece) {
        const r = room;
        room = undefined;
        r?.();
        return { kind: "rows", bytes: piece };
      }
      if (end) {
        if ("failed" in end) throw end.failed;
        return end.ok;
      }
      await new Promise<void>((resolve) => (wake = resolve));
    }
  };
};

/** Whether `bytes` is all of its buffer (a pooled Buffer is not, and is copied instead). */
const isWhole = (bytes: Uint8Array): boolean => bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;

const handle = async (request: MapperRequest): Promise<MapperReply> => {
  switch (request.kind) {
    case "open": {
      const op = (await registry).get(request.op);
      const params = op.parseParams(request.params);
      const { onBadRecord, header, ...rest } = request.ctx;
      skipped = 0;
      firstSkipped = undefined;
      const ctx: MapContext = {
        ...rest,
        ...(header ? { header } : {}),
        bad(error: CloudmillError) {
          if (onBadRecord === "fail") throw error;
          skipped++;
          firstSkipped ??= error.toJSON();
        },
      };
      mapper = op.mapper(params, ctx);
      return { kind: "ok" };
    }
    case "block":
      mapper!.block({
        bytes: Buffer.from(request.bytes.buffer, request.bytes.byteOffset, request.bytes.byteLength),
        offset: request.offset,
        first: request.first,
      });
      return { kind: "ok" };
    case "finish": {
      const partial = mapper!.finish();
      mapper = undefined;
      return { kind: "finished", partial, skipped, ...(firstSkipped ? { firstSkipped } : {}) };
    }
    case "mergeOpen": {
      const op = (await registry).get(request.op);
      const params = op.parseParams(request.params);
      merging = {
        outside: new ReadingChain(op.merger(params), false),
        ...(request.twoWays ? { inside: new ReadingChain(op.merger(params), true) } : {}),
      };
      return { kind: "ok" };
    }
    case "mergeAdd": {
      const span = spanOfReadings(request.span);
      merging!.outside.add(span);
      merging!.inside?.add(span);
      return { kind: "ok" };
    }
    case "mergeFinish": {
      const { outside, inside } = merging!;
      merging = undefined;
      return { kind: "merged", outside: outside.reading(), ...(inside ? { inside: inside.reading() } : {}) };
    }
    case "knows": {
      const known = await registry;
      return { kind: "value", value: known.has(request.op) && known.digestOf(request.op) === request.digest };
    }
    case "foldOpen": {
      const op = (await registry).get(request.op);
      const params = op.parseParams(request.params);
      folding = { op, params, merger: op.merger(params) };
      return { kind: "ok" };
    }
    case "foldAdd":
      folding!.merger.add(request.partial);
      return { kind: "ok" };
    case "foldValue":
      return { kind: "value", value: folding!.merger.value() };
    case "finalize": {
      const { op, params } = folding!;
      const { names, inputCount } = request;
      return { kind: "value", value: op.finalize(request.partial, params, { inputCount, inputName: (i) => names.get(i) ?? String(i) }) };
    }
    case "reduceOpen": {
      const op = (await registry).get(request.op);
      const keyed = op.keyed;
      if (!keyed) throw new CloudmillError(ErrorCode.INTERNAL, `op ${op.name} is not keyed, but a reduce task names it`);
      const params = op.parseParams(request.params);
      const scratch = new PortScratch(request.scratch);
      reducing = {
        merge: new RunMerge({
          combine: (a, b) => keyed.combine(a, b, params),
          ...(keyed.toJson ? { toJson: keyed.toJson } : {}),
          ...(keyed.gathers ? { gathers: true } : {}),
          spillBytes: request.spillBytes,
          scratch,
          prefix: request.prefix,
        }),
        row: (key, value) => keyed.row(key, value, params),
        scratch,
      };
      return { kind: "ok" };
    }
    case "reduceRun":
      await reducing!.merge.addRun(Buffer.from(request.bytes.buffer, request.bytes.byteOffset, request.bytes.byteLength), request.where);
      return { kind: "ok" };
    case "reduceNext": {
      const r = reducing!;
      r.next ??= rowsAsAsked(r.merge, r.row);
      const reply = await r.next();
      if (reply.kind === "reduced") {
        r.scratch.close();
        reducing = undefined;
      }
      return reply;
    }
  }
};

port.on("message", (request: MapperRequest | ExitRequest) => {
  if (isExitRequest(request)) process.exit(0);
  void handle(request).then(
    // A piece of rows is the thread's own fresh buffer: moved, not copied.
    (reply) => port.postMessage(reply, reply.kind === "rows" && isWhole(reply.bytes) ? [reply.bytes.buffer as ArrayBuffer] : []),
    (err: unknown) => port.postMessage({ kind: "error", error: toCloudmillError(err).toJSON() } satisfies MapperReply),
  );
});
