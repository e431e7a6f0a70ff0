/**
 * Deterministic benchmark inputs: Zipf-distributed words (like real text) and numbers,
 * from a seeded PRNG, cached in .bench/ under a name that encodes seed and size.
 */
import { createWriteStream, existsSync } from "node:fs";
import { rename } from "node:fs/promises";
import { once } from "node:events";
import path from "node:path";
import { prng } from "../lib/dev/prng.js";

const SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "an", "el", "or", "us", "qu", "be", "zo", "ph", "th", "ch", "ae", "ü"];

const vocabulary = (size: number, rand: () => number): Buffer[] => {
  const words = new Set<string>();
  while (words.size < size) {
    const n = 1 + Math.floor(rand() * 4);
    let w = "";
    for (let i = 0; i < n; i++) w += SYLLABLES[Math.floor(rand() * SYLLABLES.length)];
    if (rand() < 0.1) w = w[0]!.toUpperCase() + w.slice(1);
    words.add(w);
  }
  return [...words].map((w) => Buffer.from(w));
};

const writeFile = async (file: string, bytes: number, fill: (buf: Buffer) => number): Promise<void> => {
  const tmp = `${file}.tmp`;
  const out = createWriteStream(tmp);
  let written = 0;
  while (written < bytes) {
    const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
    const n = fill(buf);
    if (!out.write(buf.subarray(0, n))) await once(out, "drain");
    written += n;
  }
  out.end();
  await once(out, "finish");
  await rename(tmp, file);
};

/** Text of about `bytes` bytes: lines of 0–20 Zipf(1.1)-distributed words from a 60k vocabulary. */
export const generateText = async (dir: string, bytes: number, seed: number): Promise<string> => {
  const file = path.join(dir, `text-${seed}-${bytes}.txt`);
  if (existsSync(file)) return file;
  const rand = prng(seed);
  const vocab = vocabulary(60_000, rand);
  const cdf = new Float64Array(vocab.length);
  let total = 0;
  for (let i = 0; i < vocab.length; i++) cdf[i] = total += 1 / (i + 1) ** 1.1;
  for (let i = 0; i < vocab.length; i++) cdf[i]! /= total;
  const pick = (): Buffer => {
    const u = rand();
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return vocab[lo]!;
  };
  await writeFile(file, bytes, (buf) => {
    let n = 0;
    while (n < buf.length - 400) {
      const words = Math.floor(rand() * 21);
      for (let i = 0; i < words; i++) {
        if (i) buf[n++] = rand() < 0.05 ? 0x09 : 0x20;
        n += pick().copy(buf, n);
      }
      buf[n++] = 0x0a;
    }
    return n;
  });
  return file;
};

/** Numbers of about `bytes` bytes, one per line: normals, integers and some blank lines. */
export const generateNumbers = async (dir: string, bytes: number, seed: number): Promise<string> => {
  const file = path.join(dir, `numbers-${seed}-${bytes}.txt`);
  if (existsSync(file)) return file;
  const rand = prng(seed);
  await writeFile(file, bytes, (buf) => {
    let n = 0;
    while (n < buf.length - 64) {
      const r = rand();
      let line: string;
      if (r < 0.01) line = "";
      else if (r < 0.3) line = String(Math.floor(rand() * 1e6) - 5e5);
      else {
        // Box–Muller normal, mean 100, sd 15, 4 decimals.
        const z = Math.sqrt(-2 * Math.log(rand() || 1e-12)) * Math.cos(2 * Math.PI * rand());
        line = (100 + 15 * z).toFixed(4);
      }
      n += buf.write(line, n, "latin1");
      buf[n++] = 0x0a;
    }
    return n;
  });
  return file;
};
