/**
 * CSV with quoted newlines on the emulated fleet: the worker processes read each chunk both
 * ways on their mapper threads, and the reducer picks the readings by quote parity. Chunk
 * boundaries are forced inside quoted newlines; the answers are Python's csv module's over
 * the whole file. And the public csv-spectrum cases give their expected records locally.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { pythonCsvRows, registryWithRows } from "../helpers/csv.js";
import { startTestCloud, type TestCloud } from "../helpers/devCloud.js";

const CHUNK = 211;
let dir: string;
let file: string;
let bytes: Buffer;
let cloud: TestCloud;

/** Offsets whose byte is inside a quoted field, by a plain walk over the file (quotes toggle). */
const insideQuotes = (b: Buffer): Set<number> => {
  const inside = new Set<number>();
  let open = false;
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x22) open = !open;
    else if (open) inside.add(i);
  }
  return inside;
};

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-csv-"));
  file = path.join(dir, "survey.csv");
  // A survey export: every fourth note spans lines (LF or CRLF inside quotes), some hold commas and quotes.
  const rows = ["id,score,note"];
  for (let i = 0; i < 300; i++) {
    const note =
      i % 4 === 0
        ? `"line one of ${i}\nline two, with a comma${i % 8 === 0 ? '\r\n""quoted"" three' : ""}"`
        : i % 3 === 0
          ? `"plain, ${i}"`
          : `n${i}`;
    rows.push(`${i},${(i * 37) % 101}.${i % 10},${note}`);
  }
  bytes = Buffer.from(`${rows.join("\r\n")}\r\n`);
  await writeFile(file, bytes);
  cloud = await startTestCloud({ chunkSize: CHUNK });
}, 90_000);

afterAll(async () => {
  await cloud?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("CSV with quoted newlines on the emulated fleet", () => {
  it("counts Python's records and sums its column, with chunk boundaries inside quoted newlines", async () => {
    const inside = insideQuotes(bytes);
    const boundaries = Array.from({ length: Math.floor(bytes.length / CHUNK) }, (_, i) => (i + 1) * CHUNK);
    expect(boundaries.filter((b) => inside.has(b - 1) && inside.has(b)).length).toBeGreaterThan(10);

    const expected = pythonCsvRows(file);
    const scores = expected.map((r) => Number(r[1]));
    await cloud.put("_inputs/survey.csv", bytes);
    const input = `s3://${cloud.input}/_inputs/survey.csv`;
    await cloud.put("_jobs/csv-count.json", JSON.stringify({ op: "count", inputs: [input], format: "csv" }));
    await cloud.put("_jobs/csv-stats.json", JSON.stringify({ op: "stats", inputs: [input], format: "csv", params: { column: "score" } }));
    const count = await cloud.waitForEnd("_jobs/csv-count/status.json");
    expect(count.state, JSON.stringify(count.error)).toBe("succeeded");
    expect(count.chunks).toBe(Math.ceil(bytes.length / CHUNK));
    expect(await cloud.getJson(cloud.output, "_jobs/csv-count/result.json")).toEqual({ records: expected.length });

    const stats = await cloud.waitForEnd("_jobs/csv-stats/status.json");
    expect(stats.state, JSON.stringify(stats.error)).toBe("succeeded");
    const result = (await cloud.getJson(cloud.output, "_jobs/csv-stats/result.json")) as Record<string, number>;
    // Tenths summed exactly: the reference sums integers of tenths.
    const tenths = expected.reduce((s, r) => s + Math.round(Number(r[1]) * 10), 0);
    expect([result.count, result.sum, result.min, result.max]).toEqual([
      scores.length,
      tenths / 10,
      Math.min(...scores),
      Math.max(...scores),
    ]);
  });

  it("sniffs a semicolon-separated export's separator on the workers and says so in status.json", async () => {
    const semi = Buffer.from(bytes.toString("utf8").replaceAll(",", ";"));
    await cloud.put("_inputs/semi.csv", semi);
    const input = `s3://${cloud.input}/_inputs/semi.csv`;
    const spec = { op: "count", inputs: [input], format: "csv", params: { separator: "auto" } };
    await cloud.put("_jobs/csv-semi.json", JSON.stringify(spec));
    const status = await cloud.waitForEnd("_jobs/csv-semi/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expect(status.csv).toEqual([{ input, separator: ";" }]);
    expect(await cloud.getJson(cloud.output, "_jobs/csv-semi/result.json")).toEqual({ records: pythonCsvRows(file).length });
  });

  it("fails a job whose quote never closes, naming the byte where it opened", async () => {
    const broken = Buffer.concat([bytes, Buffer.from('9999,1.0,"never closed\r\n1,2,3\r\n')]);
    await cloud.put("_inputs/broken.csv", broken);
    await cloud.put(
      "_jobs/csv-broken.json",
      JSON.stringify({ op: "count", inputs: [`s3://${cloud.input}/_inputs/broken.csv`], format: "csv" }),
    );
    const status = await cloud.waitForEnd("_jobs/csv-broken/status.json");
    expect(status.state).toBe("failed");
    expect(status.error).toMatchObject({ code: "BAD_RECORD", offset: bytes.length + 9 });
    expect(status.error!.message).toContain("unterminated quoted field");
  });
});

describe("the csv-spectrum cases", () => {
  const registry = registryWithRows();
  const spectrum = path.dirname(createRequire(import.meta.url).resolve("csv-spectrum/package.json"));

  it("gives each case's expected records at every chunk size", async () => {
    const names = (await readdir(path.join(spectrum, "csvs"))).map((f) => path.basename(f, ".csv"));
    expect(names.length).toBe(12);
    for (const name of names) {
      const csv = path.join(spectrum, "csvs", `${name}.csv`);
      let expected = JSON.parse(await readFile(path.join(spectrum, "json", `${name}.json`), "utf8")) as unknown;
      // The suite's own slip: location_coordinates.json is one object (not a list), and its phone
      // number is not the one in its CSV. Python's csv module reads the CSV as we do; use its rows.
      if (name === "location_coordinates") {
        const [header, ...data] = [["Contact Phone Number", "Location Coordinates", "Cities", "Counties"], ...pythonCsvRows(csv)];
        expected = data.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i]])));
        expect((expected as Record<string, string>[])[0]!["Location Coordinates"]).toBe(
          (JSON.parse(await readFile(path.join(spectrum, "json", `${name}.json`), "utf8")) as Record<string, string>)[
            "Location Coordinates"
          ],
        );
      }
      const size = (await readFile(csv)).length;
      for (const chunkSize of [1, 3, size]) {
        const spec = parseJobSpec({ op: "rows", inputs: [csv], format: "csv", chunkSize });
        const { result } = await runLocal({ spec, registry, workers: 0, workDir: path.join(dir, `spectrum-${name}-${chunkSize}`) });
        expect(result, `${name} at chunk size ${chunkSize}`).toEqual(expected);
      }
    }
  });
});
