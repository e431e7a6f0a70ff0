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
