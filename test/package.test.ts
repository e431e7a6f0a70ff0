/**
 * cloudmill as a lab's dependency: `npm pack` ships what the root, `cloudmill/sdk` and
 * `cloudmill/cdk` need and no tests; a fresh lab project installs the tarball and runs its own
 * op (which imports an npm package of the lab's) through the installed `cloudmill run`.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packageRoot } from "../lib/local/paths.js";
import { runProcess } from "./helpers/processes.js";

let dir: string;
let tarball: string;
let files: string[];
let lab: string;

const npm = (args: readonly string[], cwd: string): string =>
  execFileSync("npm", [...args], { cwd, encoding: "utf8", env: { ...process.env, npm_config_update_notifier: "false" } });

beforeAll(async () => {
  if (!existsSync(path.join(packageRoot, "dist/lib/index.js"))) throw new Error("build first: npx tsc -p tsconfig.build.json");
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-pack-"));
  // --ignore-scripts: the build in dist/ is what ships; `prepare` would only rebuild it.
  const [packed] = JSON.parse(npm(["pack", "--json", "--ignore-scripts", "--pack-destination", dir], packageRoot)) as {
    filename: string;
    files: { path: string }[];
  }[];
  tarball = path.join(dir, packed!.filename);
  files = packed!.files.map((f) => f.path);

  lab = path.join(dir, "lab");
  await mkdir(path.join(lab, "ops"), { recursive: true });
  const zodVersion = (JSON.parse(npm(["pkg", "get", "dependencies.zod"], packageRoot)) as string).replace(/^\D*/, "");
  await writeFile(
    path.join(lab, "package.json"),
    JSON.stringify(
      { name: "a-lab", private: true, type: "module", dependencies: { cloudmill: `file:${tarball}`, zod: zodVersion } },
      null,
      2,
    ),
  );
  // The lab's op: validates each record with the lab's own dependency, counts the ones that pass.
  await writeFile(
    path.join(lab, "ops", "index.js"),
    `import { defineOp } from "cloudmill";
import { z } from "zod";
const Reading = z.object({ station: z.string(), celsius: z.number() });
export const validReadings = defineOp({
  name: "valid-readings",
  format: "jsonl",
  map: (record) => (Reading.safeParse(record).success ? 1 : 0),
  combine: (a, b) => a + b,
  orderFree: true,
  finalize: (n) => ({ valid: n ?? 0 }),
});
`,
  );
  // Offline where the cache has it: the same registry packages this repository installed.
  npm(["install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts"], lab);
}, 240_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("npm pack", () => {
  it("ships the root, the SDK, the construct, the functions, the worker and its Dockerfile", () => {
    for (const f of [
      "dist/lib/index.js",
      "dist/lib/index.d.ts",
      "dist/lib/sdk/index.js",
      "dist/infra/index.js",
      "dist/functions/splitter.js",
      "dist/worker/main.js",
      "worker/Dockerfile",
      "bin/cloudmill.js",
      "LICENSE",
      "README.md",
      "package.json",
    ]) {
      expect(files, f).toContain(f);
    }
  });

  it("ships no tests, benchmarks, sources, source maps or development files", () => {
    const unwanted = files.filter(
      (f) => /^(test|bench|examples|docs|\.ci)\//.test(f) || /(?<!\.d)\.ts$|\.map$/.test(f) || /^dist\/(test|bench)\//.test(f),
    );
    expect(unwanted).toEqual([]);
  });
});

describe("a lab project that depends on the tarball", () => {
  it("runs its own op, which imports the lab's own npm dependency, through the installed `cloudmill run`", async () => {
    const lines = [
      '{"station":"north","celsius":-3.5}',
      '{"station":"north","celsius":"n/a"}',
      '{"station":"south","celsius":21}',
      '{"celsius":4}',
      '{"station":"east","celsius":0}',
    ];
    const rows = Array.from({ length: 4000 }, (_, i) => lines[i % lines.length]!);
    await writeFile(path.join(lab, "readings.jsonl"), `${rows.join("\n")}\n`);
    // Independent reference: the same validity rule, in Python.
    const expected = Number(
      execFileSync(
        "python3",
        [
          "-c",
          "import json,sys\n" +
            "n=0\n" +
            "for l in open(sys.argv[1]):\n" +
            "  r=json.loads(l)\n" +
            "  n+=isinstance(r.get('station'),str) and type(r.get('celsius')) in (int,float)\n" +
            "print(n)",
          path.join(lab, "readings.jsonl"),
        ],
        { encoding: "utf8" },
      ).trim(),
    );
    const bin = path.join(lab, "node_modules", ".bin", "cloudmill");
    const r = await runProcess(
      bin,
      ["run", "readings.jsonl", "--op", "valid-readings", "--ops", "./ops/index.js", "--chunk-size", "4KiB", "--workers", "2"],
      {
        cwd: lab,
        env: process.env,
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ valid: expected });
    expect(expected).toBe(2400);
  });

  it("resolves the root and `cloudmill/sdk` from the installed package; the SDK is not in the root", async () => {
    const probe = path.join(lab, "probe.mjs");
    await writeFile(
      probe,
      `const root = await import("cloudmill");
const sdk = await import("cloudmill/sdk");
const aws = (await import("node:fs")).readdirSync(new URL("./node_modules/@aws-sdk/", import.meta.url));
console.log(JSON.stringify({ root: Object.keys(root).sort(), sdk: typeof sdk.Cloudmill, awsInstalled: aws.length > 0 }));
`,
    );
    const r = await runProcess(process.execPath, [probe], { cwd: lab, env: process.env });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { root: string[]; sdk: string; awsInstalled: boolean };
    expect(out.root).toEqual(expect.arrayContaining(["defineOp", "runLocal", "OpRegistry", "CloudmillError"]));
    expect(out.root).not.toContain("Cloudmill");
    expect(out.sdk).toBe("function");
    expect(out.awsInstalled).toBe(true);
  });

  it("installs only what the package declares: the lab's tree has no test tooling from cloudmill", async () => {
    const installed = await readdir(path.join(lab, "node_modules"));
    for (const dev of ["vitest", "fast-check", "@biomejs", "typescript"]) expect(installed).not.toContain(dev);
  });
});
