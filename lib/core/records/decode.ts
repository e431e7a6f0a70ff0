/**
 * Whole compressed streams decoded as they are read, in bounded memory: gzip (and BGZF, which
 * is gzip in many members) member by member (gzipMembers.ts), zstd by fzstd with every frame's
 * checksum verified (a frame without one is refused).
 * Corrupt or truncated data ends the stream with an error naming the compressed byte.
 */
import { Decompress } from "fzstd";
import xxhash from "xxhash-wasm";
import { CloudmillError, ErrorCode } from "../errors.js";
import { corruptInput, type Codec } from "./codecs.js";
import { gzipMembers } from "./gzipMembers.js";

type Compressed = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/**
 * The decoded bytes of a whole compressed stream. Breaking out of the loop stops the read.
 * `ended` is told how many compressed bytes the data took, once it has all come out: a gzip
 * stream ends at a zero byte after a member (tape padding), so bytes may be left over.
 */
export const decodedStream = (codec: Codec, compressed: Compressed, ended?: (consumed: number) => void): AsyncIterable<Uint8Array> =>
  codec === "zstd" ? unzstd(compressed, ended) : gzipMembers(codec, compressed, ended);

/** Compressed bytes pushed to fzstd at once: bounds what one push can decode. */
const ZSTD_SLICE = 16 * 1024;

/** The XXH64 module, instantiated once per thread (a WebAssembly instance). */
let hasher: ReturnType<typeof xxhash> | undefined;

async function* unzstd(compressed: Compressed, ended?: (consumed: number) => void): AsyncGenerator<Uint8Array> {
  hasher ??= xxhash();
  const { create64 } = await hasher;
  const out: Uint8Array[] = [];
  const frames = new ZstdFrames();
  let hash = create64(0n);
  // A decoder per frame: fzstd holds back a frame's last bytes when the frame is short (under
  // 18 bytes), and only a final push lets them out.
  const decoderOf = (): Decompress =>
    new Decompress((data) => {
      out.push(data);
      hash.update(data);
    });
  let decoder = decoderOf();
  let at = 0;
  const push = (bytes: Uint8Array, final: boolean): void => {
    try {
      decoder.push(bytes, final);
    } catch (err) {
      throw corruptInput("zstd", at, err instanceof Error ? err.message : String(err));
    }
  };
  for await (const chunk of compressed) {
    for (let i = 0; i < chunk.length; ) {
      // A push never spans two frames, so a frame's decoded bytes are all out once its last byte is pushed.
      const { walked, ended } = frames.walk(chunk, i, ZSTD_SLICE, at);
      push(chunk.subarray(i, i + walked), false);
      at += walked;
      i += walked;
      if (ended) {
        push(new Uint8Array(0), true);
        decoder = decoderOf();
        if (ended.checksum !== undefined && Number(hash.digest() & 0xffffffffn) !== ended.checksum)
          throw corruptInput("zstd", at, "a frame's checksum does not match its decoded data");
        hash = create64(0n);
      }
      yield* out;
      out.length = 0;
    }
  }
  if (!frames.atFrameStart()) {
    const zeros = frames.zerosFrom(at);
    throw zeros === undefined ? corruptInput("zstd", at, "the data ends inside a zstd frame") : zeroPadding(zeros);
  }
  yield* out;
  ended?.(at);
}

const ZSTD_MAGIC = 0xfd2fb528;

/** Zero bytes where a frame would start: padding, which zstd -d refuses as well ("unsupported format"). */
const zeroPadding = (at: number): CloudmillError =>
  corruptInput(
    "zstd",
    at,
    `zero bytes where a zstd frame should start (padding?), which zstd -d refuses too; if only zeros follow, head -c ${at} keeps the data`,
  );

/** Largest window decoded, as libzstd's default limit: fzstd allocates whatever a frame header asks. */
const ZSTD_MAX_WINDOW = 128 * 2 ** 20;

/** A zstd frame header's dictionary id (its descriptor, then the window byte unless single-segment): 0 for none. */
const dictionaryOf = (h: readonly number[]): number => {
  const fhd = h[0]!;
  const bytes = [0, 1, 2, 4][fhd & 3]!;
  const from = (fhd & 0x20) !== 0 ? 1 : 2;
  let id = 0;
  for (let k = bytes - 1; k >= 0; k--) id = id * 256 + h[from + k]!;
  return id;
};

/** The window a zstd frame header (descriptor byte and what follows) asks for: its window descriptor, or its content size. */
const windowOf = (h: readonly number[]): number => {
  const fhd = h[0]!;
  if ((fhd & 0x20) === 0) {
    const wd = h[1]!;
    const base = 2 ** (10 + (wd >> 3));
    return base + (base / 8) * (wd & 7);
  }
  const did = [0, 1, 2, 4][fhd & 3]!;
  const size = [1, 2, 4, 8][fhd >> 6]!;
  let fcs = 0;
  for (let i = size - 1; i >= 0; i--) fcs = fcs * 256 + h[1 + did + i]!;
  return size === 2 ? fcs + 256 : fcs;
};

/** A frame that ended, with the checksum of its decoded bytes if it stores one (the low 32 bits of their XXH64). */
interface FrameEnd {
  readonly checksum?: number;
}

type FrameState = "magic" | "skipSize" | "frameHeader" | "blockHeader" | "body" | "checksum";

/**
 * Walks the frames of a zstd stream by their headers alone (block sizes are in the clear), so
 * each frame's end, and the checksum stored there, are known without decoding.
 */
class ZstdFrames {
  /** What the next bytes are: a header gathered byte by byte, or a body skipped. */
  #state: FrameState = "magic";
  #header: number[] = [];
  #need = 4;
  #skip = 0;
  /** The body being skipped is a skippable frame's (it ends the frame). */
  #skippable = false;
  #hasChecksum = false;
  #lastBlock = false;

  atFrameStart(): boolean {
    return this.#state === "magic" && this.#header.length === 0;
  }

  /** Where the bytes walked since the last frame began, when they are all zeros (`at`: where the walk is). */
  zerosFrom(at: number): number | undefined {
    return this.#state === "magic" && this.#header.every((b) => b === 0) ? at - this.#header.length : undefined;
  }

  /** Walks at most `max` bytes of `bytes` from `i` (at compressed byte `at`), stopping just after a frame's end. */
  walk(bytes: Uint8Array, i: number, max: number, at: number): { walked: number; ended?: FrameEnd } {
    const stop = Math.min(bytes.length, i + max);
    let j = i;
    while (j < stop) {
      let ended: FrameEnd | undefined;
      if (this.#state === "body") {
        const n = Math.min(this.#skip, stop - j);
        this.#skip -= n;
        j += n;
        if (this.#skip > 0) break;
        ended = this.#afterBody();
      } else {
        this.#header.push(bytes[j]!);
        j++;
        if (this.#header.length === this.#need) ended = this.#parse(at + (j - i));
      }
      if (ended) return { walked: j - i, ended };
    }
    return { walked: j - i };
  }

  #to(state: FrameState, need: number): void {
    this.#state = state;
    this.#need = need;
    this.#header = [];
  }

  #body(size: number, skippable: boolean): FrameEnd | undefined {
    this.#state = "body";
    this.#skip = size;
    this.#skippable = skippable;
    return size === 0 ? this.#afterBody() : undefined;
  }

  #afterBody(): FrameEnd | undefined {
    if (this.#skippable) {
      this.#to("magic", 4);
      return {};
    }
    if (!this.#lastBlock) this.#to("blockHeader", 3);
    else if (this.#hasChecksum) this.#to("checksum", 4);
    else {
      this.#to("magic", 4);
      return {};
    }
    return undefined;
  }

  #parse(at: number): FrameEnd | undefined {
    const h = this.#header;
    const u32 = (): number => (h[0]! | (h[1]! << 8) | (h[2]! << 16) | (h[3]! << 24)) >>> 0;
    switch (this.#state) {
      case "magic": {
        const magic = u32();
        if (magic === ZSTD_MAGIC) this.#to("frameHeader", 1);
        else if ((magic & 0xfffffff0) === 0x184d2a50) this.#to("skipSize", 4);
        else throw magic === 0 ? zeroPadding(at - 4) : corruptInput("zstd", at - 4, "not the start of a zstd frame");
        return undefined;
      }
      case "skipSize":
        return this.#body(u32(), true);
      case "frameHeader": {
        if (h.length === 1) {
          const fhd = h[0]!;
          if ((fhd & 8) !== 0) throw corruptInput("zstd", at - 1, "a frame header with its reserved bit set");
          const single = (fhd & 0x20) !== 0;
          const did = [0, 1, 2, 4][fhd & 3]!;
          const fcs = [single ? 1 : 0, 2, 4, 8][fhd >> 6]!;
          this.#hasChecksum = (fhd & 4) !== 0;
          // Without its checksum a damaged frame decodes to other bytes as often as it fails:
          // fzstd checks far less than libzstd does, and a wrong answer must never pass as one.
          if (!this.#hasChecksum)
            throw new CloudmillError(
              ErrorCode.BAD_RECORD,
              `zstd frame at compressed byte ${at - 5} has no checksum (written with --no-check, or by a library ` +
                "that leaves it out), so damage to its data would pass unseen: recompress it with the zstd tool, which adds one",
            );
          const rest = (single ? 0 : 1) + did + fcs;
          if (rest > 0) {
            this.#need = 1 + rest;
            return undefined;
          }
        }
        const dictionary = dictionaryOf(h);
        if (dictionary !== 0)
          throw new CloudmillError(
            ErrorCode.BAD_RECORD,
            `zstd frame at compressed byte ${at - h.length - 4} was written with a dictionary (id ${dictionary}), which ` +
              "cloudmill does not read: recompress it without one (zstd without -D)",
          );
        const window = windowOf(h);
        if (window > ZSTD_MAX_WINDOW) {
          throw new CloudmillError(
            ErrorCode.BAD_RECORD,
            `zstd frame at compressed byte ${at - h.length} needs a ${Math.ceil(window / 2 ** 20)} MiB window, past the ` +
              `${ZSTD_MAX_WINDOW / 2 ** 20} MiB cloudmill decodes (zstd's own default; it was written with --long): ` +
              "recompress it without --long",
          );
        }
        this.#to("blockHeader", 3);
        return undefined;
      }
      case "blockHeader": {
        const v = h[0]! | (h[1]! << 8) | (h[2]! << 16);
        this.#lastBlock = (v & 1) !== 0;
        const type = (v >> 1) & 3;
        if (type === 3) throw corruptInput("zstd", at - 3, "a block of the reserved type");
        // An RLE block is one byte repeated: its size field counts decoded bytes.
        return this.#body(type === 1 ? 1 : v >>> 3, false);
      }
      case "checksum": {
        const checksum = u32();
        this.#to("magic", 4);
        return { checksum };
      }
      default:
        return undefined;
    }
  }
}
