/**
 * The README's "Your own code" section runs as written, from a lab's point of view: its module
 * is written where its first line says, each `$ npx cloudmill ...` line runs through the
 * installed bin (the dev cloud is started here, on a free port, with the same module), and its
 * SDK script runs as a plain Node process. Answers come from Python and awk.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { OPS_LISTING_KEY } from "../../lib/core/keys.js";
import { silentLogger } from "../../lib/core/log.js";
import { startDevCloud, type DevCloud } from "../../lib/dev/devCloud.js";
import { BIN, requireBuild, ROOT } from "../helpers/devCloud.js";
import { runProcess, shellWords } from "../helpers/processes.js";
import { childEnv } from "../sdk/support.js";

const README_ENDPOINT = "http://127.0.0.1:4566";

/** The README's section, from its heading to the next one. */
const SECTION = ((text: string) => {
  const start = text.indexOf("## Your own code\n");
  if (start < 0) throw new Error('README.md has no "Your own code" section');
  const end = text.indexOf("\n## ", start + 3);
  return text.slice(start, end < 0 ? undefined : end);
})(await readFile(path.join(ROOT, "README.md"), "utf8"));

const blocks = (md: string): { info: string; text: string }[] =>
  [...md.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ info: m[1]!, text: m[2]! }));

/** Code blocks whose first line names their file: `// ops/index.mjs`, `# worker.Dockerfile`. */
const files = blocks(SECTION).flatMap((b) => {
  const m = /^(?:\/\/|#) (\S+)\n/.exec(b.text);
  return m ? [{ file: m[1]!, text: b.text }] : [];
});
const commands = blocks(SECTION)
  .filter((b) => b.info === "console")
  .flatMap((b) => b.text.split("\n").filter((l) => l.startsWith("$ ")))
  .map((l) => shellWords(l.slice(2)));

let lab: string;
let cloud: DevCloud;
const env = () => childEnv({ NODE_NO_WARNINGS: "1" });

/** Python's walk over each item of the sweep, the README's task in another language. */
const pythonWalks = (items: readonly { seed: number; steps: number }[]): { seed: number; position: number; farthest: number }[] =>
  JSON.parse(
    execFileSync(
      "python3",
      [
        "-c",
        "import json,sys\n" +
          "out=[]\n" +
          "for it in json.load(sys.stdin):\n" +
          "  x=it['seed']+1; p=0; far=0\n" +
          "  for _ in range(it['steps']):\n" +
          "    x=(x*48271)%2147483647; p+=1 if x%2==0 else -1; far=max(far,abs(p))\n" +
          "  out.append({'seed':it['seed'],'position':p,'farthest':far})\n" +
          "print(json.dumps(out))",
      ],
      { input: JSON.stringify(items), encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
    ),
  ) as { seed: number; position: number; farthest: number }[];

const sweepItems = async (): Promise<{ seed: number; steps: number }[]> =>
  (await readFile(path.join(ROOT, "examples/sweep.jsonl"), "utf8"))
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as { seed: number; steps: number });

/** Runs one README command line in the lab: `npx cloudmill <args>` through the bin, the endpoint the test's. */
const cloudmill = (words: readonly string[]) => {
  expect(words.slice(0, 2)).toEqual(["npx", "cloudmill"]);
  const args = words.slice(2).map((w) => (w === README_ENDPOINT ? cloud.endpoint : w));
  return runProcess(process.execPath, [BIN, ...args], { cwd: lab, env: env() });
};

beforeAll(async () => {
  requireBuild();
  // Inside the package, so the lab's `import ... from "cloudmill"` resolves as after `npm install cloudmill`.
  await mkdir(path.join(ROOT, "node_modules/.cache"), { recursive: true });
  lab = await mkdtemp(path.join(ROOT, "node_modules/.cache/readme-lab-"));
  await symlink(path.join(ROOT, "examples"), path.join(lab, "examples"));
  for (const { file, text } of files) {
    await mkdir(path.dirname(path.join(lab, file)), { recursive: true });
    await writeFile(path.join(lab, file), text.replaceAll(README_ENDPOINT, "ENDPOINT"));
  }
  cloud = await startDevCloud({ log: silentLogger, workers: 2, opsModules: [path.join(lab, "ops/index.mjs")] });
  for (const { file } of files) {
    const text = await readFile(path.join(lab, file), "utf8");
    await writeFile(path.join(lab, file), text.replaceAll("ENDPOINT", cloud.endpoint));
  }
}, 120_000);

afterAll(async () => {
  await cloud?.stop();
  if (lab) await rm(lab, { recursive: true, force: true });
}, 60_000);

describe("README: Your own code", () => {
  it("shows the module, the four commands and the SDK script", () => {
    expect(files.map((f) => f.file)).toEqual(["ops/index.mjs", "sweep.mjs", "infra/app.mjs", "docker/worker.Dockerfile"]);
    expect(commands.map((c) => c.slice(2, 3).join(" "))).toEqual(["run", "run", "dev", "submit"]);
  });

  it("`cloudmill run` runs the lab's op, exact against awk", async () => {
    const r = await cloudmill(commands[0]!);
    expect(r.code, r.stderr).toBe(0);
    const awk = execFileSync("awk", ["{ if (length($0) > m) m = length($0) } END { print m }", path.join(ROOT, "examples/words.txt")], {
      encoding: "utf8",
    });
    expect(JSON.parse(r.stdout)).toEqual({ longest: Number(awk.trim()) });
  });

  it("`cloudmill run` runs the lab's task over the sweep, exact against Python", async () => {
    const r = await cloudmill(commands[1]!);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(await readFile(path.join(lab, "walks.json"), "utf8")) as {
      items: number;
      results: unknown[];
      errors: unknown[];
    };
    const items = await sweepItems();
    expect(out).toEqual({ items: items.length, results: pythonWalks(items), errors: [], files: [] });
  });

  it("`cloudmill submit --items` runs the task on the dev cloud that serves the module", async () => {
    expect(commands[2]).toEqual(["npx", "cloudmill", "dev", "--ops", "./ops/index.mjs", "&"]);
    const r = await cloudmill(commands[3]!);
    expect(r.code, r.stderr).toBe(0);
    const items = await sweepItems();
    expect(JSON.parse(r.stdout)).toEqual({ items: items.length, results: pythonWalks(items), errors: [], files: [] });
  }, 120_000);

  it("the SDK script maps the task over 2,000 items, its answer exact against Python", async () => {
    const r = await runProcess(process.execPath, ["sweep.mjs"], { cwd: lab, env: env() });
    expect(r.code, r.stderr).toBe(0);
    const walks = pythonWalks(Array.from({ length: 2000 }, (_, seed) => ({ seed, steps: 5000 })));
    expect(r.stdout.trim()).toBe(`2000 0 ${Math.max(...walks.map((w) => w.farthest))}`);
  }, 180_000);

  it("the lab's CDK app bundles the module into the worker image and the functions, with the digests the dev cloud serves", async () => {
    // As `npx cdk deploy --app "node infra/app.mjs"` runs it: the CLI names the output folder.
    const outdir = path.join(lab, "cdk.out");
    const r = await runProcess(process.execPath, ["infra/app.mjs"], { cwd: lab, env: { ...env(), CDK_OUTDIR: outdir } });
    expect(r.code, r.stderr).toBe(0);
    const assets = JSON.parse(await readFile(path.join(outdir, "Cloudmill-genomics.assets.json"), "utf8")) as {
      dockerImages: Record<string, { source: { directory: string } }>;
    };
    const [image] = Object.values(assets.dockerImages);
    const context = path.join(outdir, image!.source.directory);
    const dockerfile = await readFile(path.join(context, "Dockerfile"), "utf8");
    expect(dockerfile).toMatch(/^FROM node:\S+ AS cloudmill-worker$/m);
    expect(dockerfile.trimEnd().endsWith(files.find((f) => f.file === "docker/worker.Dockerfile")!.text.trimEnd())).toBe(true);
    expect(await readFile(path.join(context, "lab", "worker.Dockerfile"), "utf8")).toContain("imagemagick");
    // The deployed listing: the code digests of the bundles equal the ones of the module as written.
    const deployed = JSON.parse(await readFile(path.join(context, "ops", "registry.json"), "utf8")) as {
      ops: { name: string; digest: string }[];
    };
    const served = JSON.parse(
      await (
        await cloud.clients.s3.send(new GetObjectCommand({ Bucket: cloud.outputBucket, Key: OPS_LISTING_KEY }))
      ).Body!.transformToString(),
    ) as { ops: { name: string; digest: string }[] };
    for (const name of ["longest-line", "walk"]) {
      const digest = deployed.ops.find((o) => o.name === name)?.digest;
      expect(digest, name).toMatch(/^[0-9a-f]{16}$/);
      expect(digest, name).toBe(served.ops.find((o) => o.name === name)?.digest);
    }
  }, 180_000);
});
