/**
 * cloudmill as a lab's dependency: `npm pack` ships what the root, `cloudmill/sdk` and
 * `cloudmill/cdk` need and no tests; a fresh lab project installs the tarball and runs its own
 * op (which imports an npm package of the lab's) through the installed `cloudmill run`, through
 * the installed `cloudmill dev --ops` driven by the AWS CLI and by the SDK, and deploys it with
 * its own CDK app (`ops: [...]`), whose assets all come from the installed package.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packageRoot } from "../lib/local/paths.js";
import { freePort, spawnChild, waitFor, type Child } from "./helpers/devCloud.js";
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
  const versionOf = (field: string): string => (JSON.parse(npm(["pkg", "get", field], packageRoot)) as string).replace(/^\D*/, "");
  // The lab's CDK app needs aws-cdk-lib and constructs (cloudmill's optional peers) and esbuild (for its ops).
  const dependencies = {
    cloudmill: `file:${tarball}`,
    zod: versionOf("dependencies.zod"),
    "aws-cdk-lib": versionOf("devDependencies.aws-cdk-lib"),
    constructs: versionOf("devDependencies.constructs"),
    esbuild: versionOf("devDependencies.esbuild"),
  };
  await writeFile(path.join(lab, "package.json"), JSON.stringify({ name: "a-lab", private: true, type: "module", dependencies }, null, 2));
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
      "dist/assets/splitter/index.mjs",
      "dist/assets/reducer/index.mjs",
      "dist/assets/deadLetters/index.mjs",
      "dist/assets/worker/main.mjs",
      "dist/assets/describeOps/describeOps.mjs",
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
      (f) =>
        /^(test|bench|examples|docs|\.ci)\//.test(f) ||
        /(?<!\.d)\.ts$|\.map$/.test(f) ||
        /^dist\/(test|bench)\//.test(f) ||
        /^dist\/infra\/buildAssets\./.test(f),
    );
    expect(unwanted).toEqual([]);
  });

  it("stays small: the prebuilt bundles hold every dependency, and the tarball is under 4 MB", () => {
    expect(statSync(tarball).size).toBeLessThan(4 * 1024 * 1024);
  });
});

describe("a lab project that depends on the tarball", () => {
  it("runs its own op, which imports the lab's own npm dependency, through the installed `cloudmill run`", async () => {
    await writeReadings(path.join(lab, "readings.jsonl"));
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

  it("runs an op module written in TypeScript through the installed `cloudmill run`: tsx comes with cloudmill", async () => {
    await writeReadings(path.join(lab, "readings.jsonl"));
    await mkdir(path.join(lab, "ts-ops"), { recursive: true });
    await writeFile(
      path.join(lab, "ts-ops", "schema.ts"),
      `import { z } from "zod";
export const Reading = z.object({ station: z.string(), celsius: z.number() });
export type Reading = z.infer<typeof Reading>;
`,
    );
    await writeFile(
      path.join(lab, "ts-ops", "index.ts"),
      `import { defineOp } from "cloudmill";
import { Reading } from "./schema.js";
export const validReadingsTs = defineOp({
  name: "valid-readings-ts",
  format: "jsonl",
  map: (record: unknown): number => (Reading.safeParse(record).success ? 1 : 0),
  combine: (a: number, b: number): number => a + b,
  finalize: (n: number | undefined): { valid: number } => ({ valid: n ?? 0 }),
});
`,
    );
    const bin = path.join(lab, "node_modules", ".bin", "cloudmill");
    const args = ["run", "readings.jsonl", "--op", "valid-readings-ts", "--ops", "./ts-ops/index.ts", "--chunk-size", "4KiB", "-w", "2"];
    const r = await runProcess(bin, args, { cwd: lab, env: process.env });
    expect(r.code, r.stderr).toBe(0);
    // The count Python gives in the first test (writeReadings).
    expect(JSON.parse(r.stdout)).toEqual({ valid: 2400 });
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

/** The lab's readings: 4000 lines, 2400 of which pass the op's schema (Python counts them in the first test). */
const writeReadings = async (file: string): Promise<void> => {
  const lines = [
    '{"station":"north","celsius":-3.5}',
    '{"station":"north","celsius":"n/a"}',
    '{"station":"south","celsius":21}',
    '{"celsius":4}',
    '{"station":"east","celsius":0}',
  ];
  await writeFile(file, `${Array.from({ length: 4000 }, (_, i) => lines[i % lines.length]!).join("\n")}\n`);
};

/** Every file under dir, recursively. */
const filesUnder = (dir: string): string[] =>
  readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));

describe("the lab's own CDK app, deploying its op with the installed construct", () => {
  let outdir: string;
  let printed: { listing: { ops: { name: string; digest: string }[] } };
  beforeAll(async () => {
    await mkdir(path.join(lab, "bin"), { recursive: true });
    // The feature flags `cdk init` writes (the construct relies on S3 access logs granted by bucket policy); `npx cdk synth` would
    // pass them in CDK_CONTEXT_JSON, `node bin/app.mjs` reads them itself.
    const flags = Object.fromEntries(
      Object.entries(
        (JSON.parse(readFileSync(path.join(packageRoot, "cdk.json"), "utf8")) as { context: Record<string, unknown> }).context,
      ).filter(([k]) => k.startsWith("@aws-cdk")),
    );
    await writeFile(path.join(lab, "cdk.json"), JSON.stringify({ app: "node bin/app.mjs", context: flags }, null, 2));
    await writeFile(
      path.join(lab, "bin", "app.mjs"),
      `import { readFileSync } from "node:fs";
import { App, Stack } from "aws-cdk-lib";
import { CloudmillPipeline } from "cloudmill/cdk";
const app = new App({ outdir: "cdk.out", context: JSON.parse(readFileSync("cdk.json", "utf8")).context });
const pipeline = new CloudmillPipeline(new Stack(app, "Lab"), "Pipeline", { labName: "lab", ops: ["./ops/index.js"] });
app.synth();
console.log(JSON.stringify({ listing: pipeline.opsListing }));
`,
    );
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CDK_") && !k.startsWith("CLOUDMILL_")));
    const r = await runProcess(process.execPath, ["bin/app.mjs"], { cwd: lab, env });
    expect(r.code, r.stderr).toBe(0);
    printed = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as typeof printed;
    outdir = path.join(lab, "cdk.out");
  }, 180_000);

  const manifest = () =>
    JSON.parse(readFileSync(path.join(outdir, "Lab.assets.json"), "utf8")) as {
      files: Record<string, { source: { path: string } }>;
      dockerImages: Record<string, { source: { directory: string; dockerFile: string } }>;
    };
  const template = () =>
    JSON.parse(readFileSync(path.join(outdir, "Lab.template.json"), "utf8")) as {
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
    };
  const installed = () => path.join(lab, "node_modules", "cloudmill");

  it("puts the op's bundle in the worker image's context, beside the installed package's prebuilt worker", () => {
    const images = Object.values(manifest().dockerImages);
    expect(images).toHaveLength(1);
    const context = path.join(outdir, images[0]!.source.directory);
    expect(readdirSync(path.join(context, "ops")).sort()).toEqual(["0-index.mjs", "registry.json"]);
    expect(
      readFileSync(path.join(context, "worker", "main.mjs")).equals(readFileSync(path.join(installed(), "dist/assets/worker/main.mjs"))),
    ).toBe(true);
    // The lab's own dependency is inside the bundle: the image has no node_modules.
    expect(readFileSync(path.join(context, "ops", "0-index.mjs"), "utf8")).toMatch(/ZodObject/);
  });

  it("puts it in the reducer's code too, which is the installed package's prebuilt reducer", () => {
    const reducer = Object.values(template().Resources).find(
      (r) => r.Type === "AWS::Lambda::Function" && String(r.Properties["Description"]).startsWith("cloudmill reducer"),
    )!;
    expect((reducer.Properties["Environment"] as { Variables: Record<string, string> }).Variables["CLOUDMILL_OPS_MODULES"]).toBe(
      '["/var/task/ops/0-index.mjs"]',
    );
    const key = (reducer.Properties["Code"] as { S3Key: string }).S3Key.replace(/\.zip$/, "");
    const code = path.join(outdir, `asset.${key}`);
    // mapperThread.mjs: the thread a lab op's parts are folded on, the prebuilt one the worker has.
    expect(readdirSync(code).sort()).toEqual(["index.mjs", "mapperThread.mjs", "ops"]);
    expect(readdirSync(path.join(code, "ops"))).toEqual(["0-index.mjs"]);
    expect(readFileSync(path.join(code, "index.mjs")).equals(readFileSync(path.join(installed(), "dist/assets/reducer/index.mjs")))).toBe(
      true,
    );
    expect(
      readFileSync(path.join(code, "mapperThread.mjs")).equals(readFileSync(path.join(installed(), "dist/assets/worker/mapperThread.mjs"))),
    ).toBe(true);
  });

  it("lists the op with its digest, and no asset path or file in cdk.out points into this repository", () => {
    expect(printed.listing.ops.find((o) => o.name === "valid-readings")?.digest).toMatch(/^[0-9a-f]{16}$/);
    const m = manifest();
    const sources = [...Object.values(m.files).map((f) => f.source.path), ...Object.values(m.dockerImages).map((d) => d.source.directory)];
    expect(sources.length).toBeGreaterThanOrEqual(4);
    for (const source of sources) {
      const resolved = path.resolve(outdir, source);
      expect(resolved.startsWith(`${outdir}${path.sep}`), source).toBe(true);
    }
    const pointing = filesUnder(outdir).filter((f) => readFileSync(f, "latin1").includes(packageRoot));
    expect(pointing).toEqual([]);
  });
});

describe("the lab's op in the installed `cloudmill dev --ops`", () => {
  const exec = promisify(execFile);
  let dev: Child | undefined;
  let endpoint: string;
  let awsEnv: NodeJS.ProcessEnv;
  beforeAll(async () => {
    await writeReadings(path.join(lab, "dev-readings.jsonl"));
    awsEnv = {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("AWS_") && !k.startsWith("CLOUDMILL_"))),
      HOME: lab,
      AWS_CONFIG_FILE: path.join(lab, "aws-config"),
      AWS_SHARED_CREDENTIALS_FILE: path.join(lab, "aws-credentials"),
      AWS_ACCESS_KEY_ID: "cloudmill",
      AWS_SECRET_ACCESS_KEY: "cloudmill",
      AWS_DEFAULT_REGION: "us-east-1",
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_PAGER: "",
    };
    const port = await freePort();
    endpoint = `http://127.0.0.1:${port}`;
    dev = spawnChild(
      path.join(lab, "node_modules", ".bin", "cloudmill"),
      ["dev", "--port", String(port), "--workers", "2", "--chunk-size", "4KiB", "--ops", "./ops/index.js"],
      { cwd: lab, env: awsEnv, name: "lab cloudmill dev" },
    );
    await dev.waitForLine((l) => l.includes("emulated S3 and SQS at"), 60_000);
  }, 90_000);
  afterAll(async () => {
    if (dev && dev.child.exitCode === null && dev.child.signalCode === null) {
      dev.child.kill("SIGINT");
      await dev.exited;
    }
  });

  const aws = async (...args: string[]): Promise<string> =>
    (await exec("/usr/bin/aws", ["--endpoint-url", endpoint, ...args], { cwd: lab, env: awsEnv })).stdout;

  it("aws s3 cp under valid-readings/ gives the op's result, as Python counts it", async () => {
    await aws("s3", "cp", "dev-readings.jsonl", "s3://cloudmill-input/valid-readings/dev-readings.jsonl");
    const status = await waitFor(
      "a final status.json of the lab's op",
      async () => {
        const text = await aws("s3", "cp", "s3://cloudmill-output/valid-readings/dev-readings.jsonl/status.json", "-").catch(
          () => undefined,
        );
        if (text === undefined) return undefined;
        const st = JSON.parse(text) as { state: string; chunks: number; op?: string };
        return st.state === "running" ? undefined : st;
      },
      90_000,
      500,
    );
    expect(status).toMatchObject({ state: "succeeded", op: "valid-readings" });
    expect(status.chunks).toBeGreaterThan(10);
    const result = JSON.parse(await aws("s3", "cp", "s3://cloudmill-output/valid-readings/dev-readings.jsonl/result.json", "-"));
    expect(result).toEqual({ valid: 2400 });
  }, 150_000);

  it('`import { Cloudmill } from "cloudmill/sdk"`: map(op, ...) with the lab\'s own op object resolves to the same result', async () => {
    const script = path.join(lab, "sdk-map.mjs");
    await writeFile(
      script,
      `import { Cloudmill } from "cloudmill/sdk";
import { validReadings } from "./ops/index.js";
const mill = new Cloudmill({ endpoint: process.argv[2] });
try {
  const [future] = mill.map(validReadings, ["dev-readings.jsonl"]);
  console.log(JSON.stringify(await future.result()));
} finally {
  mill.close();
}
`,
    );
    const r = await runProcess(process.execPath, [script, endpoint], { cwd: lab, env: awsEnv });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split("\n").at(-1)!)).toEqual({ valid: 2400 });
  }, 150_000);
});
