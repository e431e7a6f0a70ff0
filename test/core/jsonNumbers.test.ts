/**
 * JSONL numbers are added as the decimals they are written as, like every other format's:
 * a number of more than 15 significant digits, which JSON.parse rounds, is read from its text.
 * References: Python's json.loads with parse_float and parse_int set to Fraction (exact, the
 * last of duplicate keys kept, as JSON.parse keeps it), rounded once.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { jsonNumberText } from "../../lib/core/records/jsonNumberText.js";
import { runLocal } from "../../lib/local/localEngine.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-jsonnum-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const PYTHON = `
import json, sys
from fractions import Fraction
if hasattr(sys, 'set_int_max_str_digits'): sys.set_int_max_str_digits(0)
f, field, key = sys.argv[1], sys.argv[2].split('.'), sys.argv[3]
def at(v, path):
    for p in path:
        if isinstance(v, dict) and p in v: v = v[p]
        elif isinstance(v, list) and p.isdigit() and (p == '0' or not p.startswith('0')) and int(p) < len(v): v = v[int(p)]
        else: return None
    return v
def stats(xs):
    n = len(xs)
    if n == 0: return {'count': 0, 'sum': 0, 'min': None, 'max': None, 'mean': None, 'variance': None}
    s = sum(xs); q = sum(x * x for x in xs)
    return {'count': n, 'sum': float(s), 'min': float(min(xs)), 'max': float(max(xs)), 'mean': float(s / n), 'variance': float((n * q - s * s) / (n * n))}
groups = {}
for line in open(f, encoding='utf-8').read().split('\\n'):
    if line.strip() == '': continue
    r = json.loads(line, parse_float=Fraction, parse_int=Fraction)
    v = at(r, field)
    x = None if v is None else Fraction(v)
    groups.setdefault(at(r, [key]) if key else '', []).append(x)
if key:
    out = {}
    for k, xs in groups.items():
        vs = [x for x in xs if x is not None]
        s = stats(vs)
        out[k] = {'count': len(xs), 'values': s['count'], 'sum': s['sum'], 'min': s['min'], 'max': s['max'], 'mean': s['mean'], 'variance': s['variance']}
    print(json.dumps(out))
else:
    print(json.dumps(stats([x for x in groups.get('', []) if x is not None])))
`;

const python = async (file: string, field: string, key = ""): Promise<unknown> =>
  JSON.parse((await promisify(execFile)("python3", ["-c", PYTHON, file, field, key], { maxBuffer: 1 << 26 })).stdout);

/** Lines whose m.v is long, short, an exponent, a numeric string, null or missing, between decoys. */
const lines = (count: number): string[] => {
  let state = 17;
  const next = (): number => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = next();
    const digits = (n: number) => Array.from({ length: n }, () => Math.floor(next() * 10)).join("");
    const sign = next() < 0.3 ? "-" : "";
    const v =
      r < 0.3
        ? `${sign}0.${digits(30)}` // rounded by JSON.parse
        : r < 0.45
          ? `${sign}${1 + Math.floor(next() * 9)}${digits(19)}` // an integer past 2^53
          : r < 0.55
            ? `${sign}${digits(1)}.${digits(20)}e-${Math.floor(next() * 30)}`
            : r < 0.75
              ? `${sign}${(next() * 1000).toFixed(3)}`
              : r < 0.85
                ? `"${sign}${digits(3)}.${digits(18)}"`
                : r < 0.92
                  ? "null"
                  : undefined;
    const station = `s${i % 4}`;
    // Decoys: digits in strings and in other fields, braces in strings, an earlier duplicate of m.
    const decoy = `"note": "id {${digits(20)}} \\"q\\" [x]", "n": 1${digits(17)}`;
    out.push(
      v === undefined
        ? `{"station": "${station}", ${decoy}}`
        : i % 5 === 0
          ? `{"m": {"v": 1}, "station": "${station}", ${decoy}, "m": {"w": [1, 2], "v": ${v}}}`
          : `{ "station" : "${station}" , "m" : { "v" : ${v} } , ${decoy} }`,
    );
  }
  return out;
};

const run = async (op: string, file: string, chunkSize: number, params: Record<string, string>) =>
  (
    await runLocal({
      spec: parseJobSpec({ op, inputs: [file], chunkSize, params, format: "jsonl" }),
      registry: new OpRegistry(),
      workers: 0,
    })
  ).result;

describe("JSONL numbers as written", () => {
  it("finds a number's text by path: nested, in arrays, the last of duplicate keys", () => {
    const text = '{"a": {"b": [7, {"c": 0.30000000000000000001}]}, "s": "} ] {\\"a\\": 9", "d": 1, "d": -2.5E+3}';
    expect(jsonNumberText(text, ["a", "b", "1", "c"])).toBe("0.30000000000000000001");
    expect(jsonNumberText(text, ["a", "b", "0"])).toBe("7");
    expect(jsonNumberText(text, ["d"])).toBe("-2.5E+3");
    expect(jsonNumberText(text, ["s"])).toBeUndefined();
    expect(jsonNumberText(text, ["a", "b", "2"])).toBeUndefined();
    expect(jsonNumberText(text, ["a", "b", "01"])).toBeUndefined();
    expect(jsonNumberText(text, ["x"])).toBeUndefined();
  });

  it("stats adds them exactly, at several chunk sizes", async () => {
    const file = path.join(dir, "readings.jsonl");
    await writeFile(file, `${lines(3000).join("\n")}\n`);
    const want = await python(file, "m.v");
    for (const chunkSize of [211, 4096, 1 << 20])
      expect(await run("stats", file, chunkSize, { field: "m.v" }), `chunk ${chunkSize}`).toEqual(want);
  });

  it("groupby's values too", async () => {
    const file = path.join(dir, "groups.jsonl");
    await writeFile(file, `${lines(2000).join("\n")}\n`);
    const want = (await python(file, "m.v", "station")) as Record<string, unknown>;
    const got = (await run("groupby", file, 997, { key: "station", value: "m.v" })) as { parts: { key: string }[] };
    const { readFile } = await import("node:fs/promises");
    const rows = (await Promise.all(got.parts.map(async (p) => (await readFile(p.key.replace(/^file:\/\//, ""), "utf8")).split("\n"))))
      .flat()
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as { key: string });
    expect(Object.fromEntries(rows.map(({ key, ...rest }) => [key, rest]))).toEqual(want);
  });
});
