/**
 * wordcount over words built to share one hash, against as many ordinary words. Before the word
 * kernel's hash took a random key per instance (lib/core/ops/wordKernel.wat), 16-byte words whose
 * high 8 bytes were solved from their low 8 all landed in one probe run: 20,000 of them took
 * 669 ms against 19 ms for ordinary words, 40,000 took 2.7 s, and a 17 MB file of them about half
 * an hour. The words here are built the same way, against the unkeyed hash; each file is counted
 * by `cloudmill run` and its total checked against `LC_ALL=C wc -w`.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import path from "node:path";

const K1 = 0x9e3779b97f4a7c15n;
const M64 = (1n << 64n) - 1n;
const rotl = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (64n - r))) & M64;
/** ASCII whitespace as wordcount splits on it. */
const SPACE = new Set([9, 10, 11, 12, 13, 32]);

/** `n` space-separated 16-byte words; `collide`: each high half solved so the unkeyed hash is one value. */
const words = (n: number, collide: boolean): Buffer => {
  const out: Buffer[] = [];
  for (let i = 0; out.length < 2 * n; i++) {
    const lo = Buffer.from(`a${i.toString(36)}`.padEnd(8, "x").slice(0, 8), "latin1");
    const hi = Buffer.alloc(8);
    if (collide) hi.writeBigUInt64LE(0x4242424242424242n ^ rotl((lo.readBigUInt64LE() * K1) & M64, 29n));
    else hi.write(`b${i.toString(36)}`.padEnd(8, "y").slice(0, 8), "latin1");
    const word = Buffer.concat([lo, hi]);
    if (!word.some((c) => SPACE.has(c))) out.push(word, Buffer.from(i % 16 === 15 ? "\n" : " "));
  }
  return Buffer.concat(out);
};

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

export interface HashFloodOptions {
  readonly dir: string;
  readonly cli: string;
  readonly words: number;
  readonly repeats: number;
}

export const hashFlooding = async (o: HashFloodOptions): Promise<{ rows: string[]; ok: boolean }> => {
  const files = await Promise.all(
    [false, true].map(async (collide) => {
      const file = path.join(o.dir, `words-${collide ? "colliding" : "plain"}-${o.words}.txt`);
      if (!existsSync(file)) await writeFile(file, words(o.words, collide));
      return file;
    }),
  );
  const times: [number[], number[]] = [[], []];
  let ok = true;
  for (let r = 0; r < o.repeats; r++) {
    for (const [k, file] of files.entries()) {
      const t0 = performance.now();
      const out = execFileSync(process.execPath, [o.cli, "run", file, "--op", "wordcount", "--workers", "0", "--no-progress"], {
        encoding: "utf8",
      });
      times[k]!.push(performance.now() - t0);
      const wc = Number(
        execFileSync("wc", ["-w", file], { encoding: "utf8", env: { ...process.env, LC_ALL: "C" } })
          .trim()
          .split(/\s+/)[0],
      );
      ok &&= (JSON.parse(out) as { total: number }).total === wc;
    }
  }
  const [plain, colliding] = times.map(median) as [number, number];
  return {
    rows: [
      "| words | ordinary 16-byte words (ms, median) | built to share the unkeyed hash (ms, median) | ratio |",
      "|---|---|---|---|",
      `| ${o.words.toLocaleString("en")} | ${plain.toFixed(0)} | ${colliding.toFixed(0)} | ${(colliding / plain).toFixed(2)}× |`,
      "",
      `Whole \`cloudmill run --workers 0\` commands, ${o.repeats} alternating rounds; totals ${ok ? "agree" : "DISAGREE"} with \`LC_ALL=C wc -w\`.`,
    ],
    ok,
  };
};
