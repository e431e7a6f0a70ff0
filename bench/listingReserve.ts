/**
 * What the splitter's listing reserve (DEFAULTS.listingReserveMs) has to cover, measured
 * against the emulator through the real AWS SDK: after a piece whose end leaves the invocation
 * more than the reserve, it may run one more piece, then store its pieces and the job's status
 * and send the continuation. So the reserve covers the worst piece (10,000 HEADs of a manifest's
 * lines, with the read-through of a whole manifest of `lines` lines when the piece starts it, or
 * 10 LIST pages of a prefix) plus that hand-off. Each step's worst of `ROUNDS` runs is printed,
 * its wall time and the CPU time of this process (client and emulator both: on a shared machine
 * the wall time waits for a core too), with the emulator's latency for one HEAD, to scale by
 * S3's (docs/scale.md).
 *
 *   npm run build && node dist/bench/listingReserve.js [lines=2000000]
 */
import { pathToFileURL } from "node:url";
import { S3BlobStore } from "../lib/aws/S3BlobStore.js";
import { SqsContinuationSender } from "../lib/aws/SqsContinuationSender.js";
import { awsClients } from "../lib/aws/clients.js";
import { DEV_BUCKETS } from "../lib/core/constants.js";
import { jobSpecOutputKeys, listingPieceKey } from "../lib/core/keys.js";
import { mapInOrder } from "../lib/core/mapInOrder.js";
import { writeJson } from "../lib/core/pipeline/blobJson.js";
import { INPUTS_PER_PIECE } from "../lib/core/pipeline/manifestInputs.js";
import { InputBudget, inputPieces, LISTING_START, type ListedPiece, type ListingCursor } from "../lib/core/pipeline/resolveInputs.js";
import { createDevResources, startEmulator } from "../lib/dev/emulator.js";

const OBJECTS = INPUTS_PER_PIECE;
const ROUNDS = 3;
/** Every key is as long, so line n of the manifest starts at byte n × LINE. */
const keyOf = (i: number): string => `bench/objs/obj-${String(i).padStart(6, "0")}.txt`;
const LINE = keyOf(0).length + 1;

const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

interface Timed<T> {
  readonly ms: number;
  readonly cpuMs: number;
  readonly value: T;
}

const timed = async <T>(fn: () => Promise<T>): Promise<Timed<T>> => {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const value = await fn();
  const cpu = process.cpuUsage(cpu0);
  return { ms: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000, value };
};

/** The worst of ROUNDS runs of fn (wall and CPU each), and its last value. */
const worst = async <T>(fn: () => Promise<T>): Promise<Timed<T>> => {
  let out = await timed(fn);
  for (let r = 1; r < ROUNDS; r++) {
    const next = await timed(fn);
    out = { ms: Math.max(out.ms, next.ms), cpuMs: Math.max(out.cpuMs, next.cpuMs), value: next.value };
  }
  return out;
};

export const main = async (lines = 2_000_000): Promise<void> => {
  const emulator = await startEmulator();
  try {
    const clients = awsClients({ endpoint: emulator.endpoint });
    const res = await createDevResources(clients, {
      taskQueue: "bench-reserve",
      deadLetterQueue: "bench-reserve-dlq",
      continuationQueue: "bench-reserve.fifo",
      continuationDeadLetterQueue: "bench-reserve-dlq.fifo",
    });
    const input = new S3BlobStore(clients.s3, DEV_BUCKETS.input);
    const output = new S3BlobStore(clients.s3, DEV_BUCKETS.output);
    const continuations = new SqsContinuationSender(clients.sqs, res.continuationQueueUrl!);
    await mapInOrder(
      Array.from({ length: OBJECTS }, (_, i) => i),
      32,
      (i) => input.put(keyOf(i), `row ${i}\n`),
    );
    // The manifest: `lines` lines naming the objects over and over (an object listed twice is read twice).
    const manifest = Buffer.alloc(lines * LINE);
    for (let n = 0; n < lines; n++) manifest.write(`${keyOf(n % OBJECTS)}\n`, n * LINE, "latin1");
    await input.put("bench/list.txt", manifest);
    const etag = (await input.head("bench/list.txt"))!.etag;
    const uri = `manifest:s3://${DEV_BUCKETS.input}/bench/list.txt`;
    const deps = { inputStore: () => input };
    const firstPiece = async (uris: string[], from: ListingCursor): Promise<ListedPiece> => {
      const pieces = inputPieces(deps, uris, from, new InputBudget(lines), INPUTS_PER_PIECE);
      const { value } = await pieces.next();
      await pieces.return(undefined);
      return value as ListedPiece;
    };

    // The emulator's latency for one HEAD, one at a time: what S3's replaces.
    const head = await timed(async () => {
      for (let i = 0; i < 200; i++) await input.head(keyOf(i));
    });
    // A piece that starts the manifest: read through (counted, checked), then 10,000 lines HEADed.
    const starts = await worst(() => firstPiece([uri], LISTING_START));
    if (starts.value.inputs.length !== INPUTS_PER_PIECE) throw new Error(`a piece of ${starts.value.inputs.length} inputs`);
    const middle = Math.floor(lines / 2 / INPUTS_PER_PIECE) * INPUTS_PER_PIECE;
    const inside = await worst(() => firstPiece([uri], { uri: 0, taken: middle, manifest: { etag, line: middle, at: middle * LINE } }));
    // 10 LIST pages of a prefix.
    const page = await worst(() => firstPiece([`s3://${DEV_BUCKETS.input}/bench/objs/`], LISTING_START));
    // The hand-off: a piece stored (as listing.ts stores one), the status, the continuation.
    const stored = {
      v: 1,
      seq: 1,
      from: LISTING_START,
      to: inside.value.to,
      found: middle,
      hidden: { count: 0, first: [] },
      inputs: inside.value.inputs,
    };
    const bytes = Buffer.byteLength(JSON.stringify(stored));
    const store = await worst(() => writeJson(output, listingPieceKey("bench-reserve", 1), stored));
    const store8 = await worst(() =>
      mapInOrder([1, 2, 3, 4, 5, 6, 7, 8], 8, (seq) => writeJson(output, listingPieceKey("bench-reserve", seq), { ...stored, seq })),
    );
    const status = await worst(() =>
      writeJson(output, jobSpecOutputKeys("bench-reserve").status, {
        jobId: "bench-reserve",
        state: "running",
        chunks: 0,
        done: 0,
        listing: { objects: middle, pieces: 1 },
      }),
    );
    let seq = 0;
    const send = await worst(() =>
      continuations.handOn({
        jobId: "bench-reserve",
        seq: ++seq,
        from: seq - 1,
        object: { bucket: DEV_BUCKETS.input, key: "_jobs/bench-reserve.json" },
      }),
    );

    const rows: [string, { ms: number; cpuMs: number }][] = [
      [`piece starting a manifest of ${lines.toLocaleString("en-US")} lines (read through, then 10,000 HEADs)`, starts],
      [`piece inside it (line ${middle.toLocaleString("en-US")}: 10,000 HEADs)`, inside],
      ["piece of a prefix (10 LIST pages)", page],
      [`store one piece (${(bytes / 2 ** 20).toFixed(1)} MiB of JSON)`, store],
      ["store 8 pieces at once", store8],
      ["write the status", status],
      ["send the continuation", send],
    ];
    const handOff = { ms: store.ms + status.ms + send.ms, cpuMs: store.cpuMs + status.cpuMs + send.cpuMs };
    const piece = [starts, inside, page].reduce((a, b) => (b.ms > a.ms ? b : a));
    rows.push(["worst piece + hand-off (one piece stored)", { ms: piece.ms + handOff.ms, cpuMs: piece.cpuMs + handOff.cpuMs }]);
    console.log(`one HEAD at a time, against the emulator: ${(head.ms / 200).toFixed(2)} ms wall, ${(head.cpuMs / 200).toFixed(2)} ms CPU`);
    console.log(`worst of ${ROUNDS} runs each, against the emulator: wall, CPU`);
    for (const [what, t] of rows) console.log(`  ${what.padEnd(88)} ${seconds(t.ms).padStart(9)} ${seconds(t.cpuMs).padStart(9)}`);
  } finally {
    await emulator.stop();
  }
};

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  await main(process.argv[2] ? Number(process.argv[2]) : undefined);
}
