/** CSV references for the tests: Python's csv module, and a lab op that hands back the records it reads. */
import { execFileSync } from "node:child_process";
import { defineOp } from "../../lib/core/ops/defineOp.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";

/** Python's csv module over the whole file: the rows after the header, empty lines dropped (a BOM is not data). */
export const pythonCsvRows = (file: string, separator = ",", encoding = "utf-8-sig"): string[][] =>
  JSON.parse(
    execFileSync(
      "python3",
      [
        "-c",
        "import csv,json,sys\ncsv.field_size_limit(sys.maxsize)\nr=[x for x in csv.reader(open(sys.argv[1],newline='',encoding=sys.argv[3]),delimiter=sys.argv[2]) if x]\n" +
          "print(json.dumps(r[1:]))",
        file,
        separator,
        encoding,
      ],
      { encoding: "utf8", maxBuffer: 1 << 30 },
    ),
  ) as string[][];

/** `rows`: a lab op over CSV whose result is every record it was given, in input order. */
export const rowsOp = defineOp({
  name: "rows",
  format: "csv",
  map: (record: unknown) => [record],
  combine: (a: unknown[], b: unknown[]) => a.concat(b),
});

/** The built-in ops and `rows`. */
export const registryWithRows = (): OpRegistry => {
  const registry = new OpRegistry();
  registry.register(rowsOp);
  return registry;
};

/** What Python makes of one group: the count of rows, and (with a value column) exact stats of its numbers. */
export interface PythonGroup {
  readonly count: number;
  readonly values?: number;
  readonly sum?: number;
  readonly min?: number | null;
  readonly max?: number | null;
  readonly mean?: number | null;
  readonly variance?: number | null;
}

/**
 * Python's GROUP BY over a CSV file with a header: per tuple of key columns, the row count and,
 * with `value`, the numbers' count, sum, min, max, mean and population variance, each computed
 * exactly over the numbers as written (Fraction of the text) and rounded once. Keyed by
 * JSON.stringify of the key values.
 */
export const pythonGroupby = (file: string, keys: readonly string[], value?: string): Map<string, PythonGroup> => {
  const script = `
import csv, json, sys
from fractions import Fraction
f, keys, val = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
rows = [x for x in csv.reader(open(f, newline='', encoding='utf-8-sig')) if x]
h = rows[0]
ki = [h.index(k) for k in keys]
vi = h.index(val) if val else None
g = {}
for x in rows[1:]:
    e = g.setdefault(tuple(x[i] for i in ki), [0, []])
    e[0] += 1
    if vi is not None and x[vi].strip() != '':
        e[1].append(Fraction(x[vi].strip()))
out = []
for k, (c, vs) in g.items():
    o = {'count': c}
    if vi is not None:
        n = len(vs)
        o['values'] = n
        if n:
            s = sum(vs)
            num = n * sum(v * v for v in vs) - s * s
            o.update(sum=float(s), min=float(min(vs)), max=float(max(vs)), mean=float(s / n), variance=float(num / (n * n)))
        else:
            o.update(sum=0, min=None, max=None, mean=None, variance=None)
    out.append([list(k), o])
print(json.dumps(out))
`;
  const out = JSON.parse(
    execFileSync("python3", ["-c", script, file, JSON.stringify(keys), value ?? ""], { encoding: "utf8", maxBuffer: 1 << 30 }),
  ) as [string[], PythonGroup][];
  return new Map(out.map(([k, g]) => [JSON.stringify(k), g]));
};
