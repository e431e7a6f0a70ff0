/**
 * bin/cloudmill.js runs the CLI's bundle (dist/assets/cli/, written by `npm run build`), and
 * the bundle carries everything a local run loads, its threads too: copied alone with the bin
 * into a folder with no dist/lib/ and no node_modules/ of its own, it still runs a threaded
 * wordcount and a lab's op module. Expected values come from Python.
 */
import { execFile, execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "../helpers/devCloud.js";

const dir = mkdtempSync(path.join(tmpdir(), "cloudmill-bundle-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const alone = path.join(dir, "alone");
mkdirSync(path.join(alone, "dist/assets"), { recursive: true });
cpSync(path.join(ROOT, "package.json"), path.join(alone, "package.json"));
cpSync(path.join(ROOT, "bin"), path.join(alone, "bin"), { recursive: true });
cpSync(path.join(ROOT, "dist/assets/cli"), path.join(alone, "dist/assets/cli"), { recursive: true });

const run = async (args: string[], cwd = alone): Promise<string> =>
  (await promisify(execFile)(process.execPath, [path.join(alone, "bin/cloudmill.js"), ...args], { cwd, maxBuffer: 1 << 26 })).stdout;

describe("the CLI's bundle", () => {
  it("runs a wordcount on two threads with no compiled modules beside it", async () => {
    const words = ["alpha", "beta", "gamma", "delta", "épsilon", "z"];
    const lines = Array.from({ length: 40_000 }, (_, i) => `${words[i % 6]} ${words[(i * 7) % 5]}\t${words[(i * 3) % 4]}${i % 11}`);
    const input = path.join(dir, "words.txt");
    writeFileSync(input, `${lines.join("\n")}\n`);
    const got = JSON.parse(
      await run(["run", input, "--op", "wordcount", "-p", "k=5", "--workers", "2", "--chunk-size", "64KiB", "--no-progress"]),
    );
    const python = [
      "import collections, json, sys",
      "c = collections.Counter(open(sys.argv[1], 'rb').read().split())",
      "top = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:5]",
      "print(json.dumps({'total': sum(c.values()), 'distinct': len(c), 'top': [[w.decode(), n] for w, n in top]}))",
    ].join("\n");
    expect(got).toEqual(JSON.parse(execFileSync("python3", ["-c", python, input], { encoding: "utf8" })));
  });

  it("loads a lab's op module that imports cloudmill from its own node_modules", async () => {
    const lab = path.join(dir, "lab");
    mkdirSync(path.join(lab, "node_modules"), { recursive: true });
    symlinkSync(ROOT, path.join(lab, "node_modules/cloudmill"), "dir");
    writeFileSync(
      path.join(lab, "ops.mjs"),
      `import { CloudmillError, defineOp, ErrorCode } from "cloudmill";
export const longest = defineOp({ name: "longest-line", format: "lines", map: (l) => l.length, combine: (a, b) => Math.max(a, b), finalize: (m) => ({ longest: m ?? 0 }) });
// Its errors are made by the lab's copy of cloudmill, not the bundle's.
export const picky = defineOp({ name: "picky", format: "lines", map: (l) => { if (l.length % 7 === 3) throw new CloudmillError(ErrorCode.BAD_RECORD, "a length of 7k+3"); return 1; }, combine: (a, b) => a + b, finalize: (n) => ({ kept: n ?? 0 }) });
`,
    );
    const input = path.join(dir, "lines.txt");
    const lines = Array.from({ length: 5000 }, (_, i) => "x".repeat((i * 7919) % 301));
    writeFileSync(input, `${lines.join("\n")}\n`);
    const got = JSON.parse(
      await run(["run", input, "--ops", "./ops.mjs", "--op", "longest-line", "-w", "2", "--chunk-size", "16KiB", "--no-progress"], lab),
    );
    const want = execFileSync("python3", ["-c", "import sys; print(max(len(l) for l in open(sys.argv[1]).read().split('\\n')))", input], {
      encoding: "utf8",
    });
    expect(got).toEqual({ longest: Number(want) });

    // An error the lab's own copy of cloudmill makes keeps its code and place through the bundle's.
    const failed = await promisify(execFile)(
      process.execPath,
      [
        path.join(alone, "bin/cloudmill.js"),
        "run",
        input,
        "--ops",
        "./ops.mjs",
        "--op",
        "picky",
        "-w",
        "2",
        "--chunk-size",
        "16KiB",
        "--no-progress",
      ],
      { cwd: lab },
    ).then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    );
    expect(failed?.code).toBe(4);
    expect(failed?.stderr).toMatch(/^cloudmill: \S+lines\.txt \(bytes \d+-\d+\): a length of 7k\+3\n/);
  });

  it("and every deployed asset carry zod's English messages only, not its forty other locales", () => {
    // `import { z } from "zod"` makes the bundler keep zod's whole namespace, its locales too
    // (about half the CLI's shared chunk): lib imports it as `import * as z`, which it can shake.
    const assets = path.join(ROOT, "dist/assets");
    const files = readdirSync(assets, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".mjs"));
    const text = (f: string) => readFileSync(path.join(assets, f), "utf8");
    const withZod = files.filter((f) => text(f).includes("Invalid input"));
    // The CLI, the splitter, the reducer, the dead-letter handler, the worker and its threads.
    expect(withZod.length).toBeGreaterThanOrEqual(6);
    // German's "Ungültige Eingabe" and Russian's "Неверный ввод", as esbuild writes them.
    expect(files.filter((f) => /Ung\\xFCltige Eingabe|\\u041D\\u0435\\u0432\\u0435\\u0440/.test(text(f)))).toEqual([]);
  });
});
