/**
 * A mapper thread: loads the process's op modules, then maps the chunks it is sent, one at a
 * time: `open` makes the op's mapper, each `block` feeds it, `finish` returns its partial. It
 * merges a merge task's spans the same way (`mergeOpen`, `mergeAdd`, `mergeFinish`). Every
 * request gets one reply. The host ends the thread when a task overruns its time.
 */
import { parentPort, workerData } from "node:worker_threads";
import { toCloudmillError, type CloudmillError, type SerializedError } from "../core/errors.js";
import { opsRegistry } from "../core/ops/opModules.js";
import type { ChunkMapper, MapContext } from "../core/ops/types.js";
import { enableLinearRegExp } from "./linearRegExp.js";
import { isExitRequest, type ExitRequest } from "./threadExit.js";
import type { MapperThreadData, MapperReply, MapperRequest } from "./mapperProtocol.js";
import { ReadingChain, spanOfReadings } from "../core/pipeline/spans.js";

enableLinearRegExp();
const port = parentPort!;
const registry = opsRegistry((workerData as MapperThreadData).opsModules);

let mapper: ChunkMapper<unknown> | undefined;
let skipped = 0;
let firstSkipped: SerializedError | undefined;
/** A merge task's chains: from outside quotes before its first span, and from inside when asked. */
let merging: { outside: ReadingChain; inside?: ReadingChain } | undefined;

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
  }
};

port.on("message", (request: MapperRequest | ExitRequest) => {
  if (isExitRequest(request)) process.exit(0);
  void handle(request).then(
    (reply) => port.postMessage(reply),
    (err: unknown) => port.postMessage({ kind: "error", error: toCloudmillError(err).toJSON() } satisfies MapperReply),
  );
});
