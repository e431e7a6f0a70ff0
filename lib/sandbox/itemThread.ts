/**
 * An item thread: loads the process's op modules, then runs one item at a time of whichever
 * task it is sent. Its heap is capped by the runner (the task's memoryMiB); the runner ends it
 * when an item overruns its time.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { CloudmillError, ErrorCode, toCloudmillError } from "../core/errors.js";
import { isTaskOp, type TaskContext } from "../core/ops/defineTask.js";
import { whyNotJson } from "../core/ops/jsonValue.js";
import { opsRegistry } from "../core/ops/opModules.js";
import type { Params } from "../core/job/spec.js";
import type { FromThread, ItemThreadData, ToThread } from "./protocol.js";
import { isExitRequest, type ExitRequest } from "./threadExit.js";

const port = parentPort!;
const data = workerData as ItemThreadData;
const registry = opsRegistry(data.opsModules);
const send = (message: FromThread, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

let abort = new AbortController();
/** Set once the worker starts to stop: every later item starts with its signal aborted. */
let stopping: Error | undefined;
let nextPut = 0;
/** The item running now, and its scratch directory once made: what an exit request ends. */
let current: number | undefined;
let scratchNow: string | undefined;
const puts = new Map<number, { resolve: (key: string) => void; reject: (e: Error) => void }>();

const put = (name: string, body: Uint8Array | string): Promise<string> => {
  const id = nextPut++;
  // A copy of the bytes themselves, whatever view they come in (a Float32Array too).
  const bytes =
    typeof body === "string"
      ? new TextEncoder().encode(body)
      : new Uint8Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
  return new Promise((resolve, reject) => {
    puts.set(id, { resolve, reject });
    send({ kind: "put", id, name, body: bytes }, [bytes.buffer as ArrayBuffer]);
  });
};

/** The output as JSON; a value JSON would change (NaN as null, a Map as {}) is refused, with why. */
const asJson = (value: unknown): unknown => {
  const why = value === undefined ? "" : whyNotJson(value, "the output");
  if (why) throw new Error(why);
  return JSON.parse(JSON.stringify(value ?? null) ?? "null") as unknown;
};

type Done = Extract<FromThread, { kind: "done" }>;

/** What an item's failure says: an Error's message, a thrown string, else what was thrown, as JSON ("it threw undefined"). */
const thrownMessage = (err: unknown): string => {
  // An Error of another realm (a vm context) is no instance of this one's.
  if (err instanceof Error || typeof (err as { message?: unknown } | null)?.message === "string") return (err as Error).message;
  if (typeof err === "string") return err;
  let shown: string;
  try {
    shown = JSON.stringify(err) ?? String(err);
  } catch {
    shown = String(err);
  }
  return `it threw ${shown.length > 200 ? `${shown.slice(0, 200)}…` : shown}`;
};

const runItem = async (task: string, params: Params, index: number, offset: number, value: unknown): Promise<Done> => {
  const op = (await registry).get(task);
  if (!isTaskOp(op)) return { kind: "done", index, ok: false, code: ErrorCode.UNKNOWN_OP, message: `${task} is an op, not a task` };
  abort = new AbortController();
  if (stopping) abort.abort(stopping);
  // Made on first use: most items never touch it, and a directory per item costs more than the item.
  let scratch: string | undefined;
  const fields = { offset };
  const ctx: TaskContext = {
    offset,
    get scratch() {
      scratch ??= mkdtempSync(path.join(data.scratchRoot, `${task}-`));
      scratchNow = scratch;
      return scratch;
    },
    signal: abort.signal,
    put,
    log: {
      info: (m, f) => send({ kind: "log", level: "info", message: m, fields: { ...fields, ...f } }),
      warn: (m, f) => send({ kind: "log", level: "warn", message: m, fields: { ...fields, ...f } }),
      error: (m, f) => send({ kind: "log", level: "error", message: m, fields: { ...fields, ...f } }),
    },
  };
  try {
    const output = await op.runItem(value, ctx, op.parseParams(params));
    try {
      return { kind: "done", index, ok: true, value: asJson(output) };
    } catch (err) {
      return { kind: "done", index, ok: false, code: ErrorCode.ITEM_FAILED, message: `output is not JSON: ${(err as Error).message}` };
    }
  } catch (err) {
    const e = toCloudmillError(err);
    // ENVIRONMENT (a ctx.put that S3 failed) stays so: the runner then has the chunk tried again.
    const code = e.code === ErrorCode.INTERNAL ? ErrorCode.ITEM_FAILED : e.code;
    return { kind: "done", index, ok: false, code, message: thrownMessage(err) };
  } finally {
    scratchNow = undefined;
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true }).catch(() => undefined);
  }
};

/** Slices of items waiting, run one after another by one loop. */
const queue: Extract<ToThread, { kind: "items" }>[] = [];
let running = false;

const drainQueue = async (): Promise<void> => {
  if (running) return;
  running = true;
  try {
    for (let next = queue.shift(); next; next = queue.shift()) await runItems(next);
  } finally {
    running = false;
  }
};

const runItems = async (message: Extract<ToThread, { kind: "items" }>): Promise<void> => {
  // The op modules load before the first item's clock starts: their load time is no item's.
  await registry.catch(() => undefined);
  for (const [i, item] of message.items.entries()) {
    const index = message.base + i;
    current = index;
    send({ kind: "start", index });
    const done = await runItem(message.task, message.params, index, item.offset, item.value).catch(
      (err: unknown): Done => ({ kind: "done", index, ok: false, code: ErrorCode.ITEM_FAILED, message: toCloudmillError(err).message }),
    );
    send(done);
  }
};

// A promise an item left rejected and unawaited (a ctx.put it did not wait for) would end the
// thread and fail whichever item runs then, losing its result: it is logged against the item
// that was running when it surfaced, and the thread goes on.
process.on("unhandledRejection", (reason) => {
  const error = reason instanceof Error ? reason.message : String(reason);
  send({ kind: "log", level: "error", message: "an item left a promise rejected that nothing awaited", fields: { item: current, error } });
});

port.on("message", (message: ToThread | ExitRequest) => {
  if (isExitRequest(message)) {
    // The item's time is up, or its worker stops: its signal aborts first, so that what it started
    // with it (a child process) ends too, and its scratch directory goes with the thread.
    abort.abort(stopping ?? new Error("the item's time is up"));
    if (scratchNow !== undefined) rmSync(scratchNow, { recursive: true, force: true });
    process.exit(0);
  }
  switch (message.kind) {
    case "items":
      queue.push(message);
      void drainQueue();
      return;
    case "put-done":
      puts.get(message.id)?.resolve(message.key);
      puts.delete(message.id);
      return;
    case "put-failed":
      puts.get(message.id)?.reject(new CloudmillError(message.code as ErrorCode, message.message));
      puts.delete(message.id);
      return;
    case "abort":
      stopping = new Error(message.reason);
      abort.abort(stopping);
      return;
  }
});
