/**
 * A lab's own ops on the fleet (`ops: [...]`): synth bundles the module (and its npm dependency)
 * into the worker image's build context and the splitter's and reducer's code, points
 * CLOUDMILL_OPS_MODULES at where they land, and publishes the listing at deploy. Then the staged
 * files themselves, copied out of cdk.out to a folder with no node_modules above it, run one job
 * against the emulator: splitter handler, worker process (the image's CMD), reducer handler, on
 * this machine's Node and on the Node 22 that Lambda and the image run. The expected answer comes
 * from Python; the digest the roles record is the one the listing publishes.
 */
import { execFileSync } from "node:child_process";
import { type Dirent, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import * as path from "node:path";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { App, Stack } from "aws-cdk-lib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS_LISTING_KEY, manifestKey } from "../../lib/core/keys.js";
import { CloudmillPipeline } from "../../infra/CloudmillPipeline.js";
import { WORKER_BASE_STAGE } from "../../infra/assets.js";
import { ESM_REQUIRE_BANNER } from "../../infra/bundling.js";
import { spawnChild, textOf, waitFor } from "../helpers/devCloud.js";
import { refWordcount } from "../helpers/reference.js";
import { useEmulator } from "../helpers/emulator.js";
import { NODE22_VERSION, node22 } from "../helpers/node22.js";
import { runProcess } from "../helpers/processes.js";
import { LAB_CONTEXT, REPO_ROOT, cdkJsonContext, flat, grantsOf, resource, synth, type Synthesized } from "./synth.js";

/** The lab's module, named as a lab names it: relative to the CDK app's working directory. */
const FIXTURE = "./test/fixtures/lab-ops/index.ts";
const OPS_CONTEXT = { ...LAB_CONTEXT, chunkSize: "4KiB" } as const;

type Env = Record<string, unknown>;
interface Listing {
  ops: { name: string; digest: string; description: string; formats: string[]; params: string[] }[];
}

const functionOf = (s: Synthesized, name: string) => resource(s.template, "AWS::Lambda::Function", `Pipeline${name}`).resource;
/** A function's staged code folder in cdk.out (`asset.<hash>`). */
const functionDir = (s: Synthesized, name: string): string => {
  const key = (functionOf(s, name).Properties!["Code"] as { S3Key: string }).S3Key;
  return path.join(s.app.outdir, `asset.${key.replace(/\.zip$/, "")}`);
};
const functionEnv = (s: Synthesized, name: string): Env => (functionOf(s, name).Properties!["Environment"] as { Variables: Env }).Variables;
const workerEnv = (s: Synthesized): Env => {
  const td = resource(s.template, "AWS::ECS::TaskDefinition", "PipelineWorkersWorkerTask").resource.Properties!;
  const [container] = td["ContainerDefinitions"] as { Environment: { Name: string; Value: unknown }[] }[];
  return Object.fromEntries(container!.Environment.map((e) => [e.Name, e.Value]));
};
/** The worker image's build context in cdk.out, from the asset manifest. */
const imageSource = (s: Synthesized): { directory: string; dockerFile: string; platform: string } => {
  const manifest = JSON.parse(readFileSync(path.join(s.app.outdir, `${s.stack.artifactId}.assets.json`), "utf8")) as {
    dockerImages: Record<string, { source: { directory: string; dockerFile: string; platform: string } }>;
  };
  const images = Object.values(manifest.dockerImages);
  expect(images).toHaveLength(1);
  return { ...images[0]!.source, directory: path.join(s.app.outdir, images[0]!.source.directory) };
};
/** The listing the custom resource puts at deploy, and the rest of its call. */
const publishedCall = (s: Synthesized) => {
  const cr = resource(s.template, "Custom::CloudmillOpsListing", "PipelineOpsListing").resource.Properties!;
  const call = JSON.parse(flat(cr["Create"])) as {
    service: string;
    action: string;
    parameters: { Bucket: string; Key: string; Body: string; ContentType: string };
    physicalResourceId: { id: string };
  };
  return { call, listing: JSON.parse(call.parameters.Body) as Listing, update: JSON.parse(flat(cr["Update"])) as unknown };
};

/** Python, on the same rule as the op: a record passes when station is a string and celsius a whole number. */
const pythonReference = (file: string): { valid: number; sum: number } =>
  JSON.parse(
    execFileSync(
      "python3",
      [
        "-c",
        "import json,sys\n" +
          "v=s=0\n" +
          "for l in open(sys.argv[1]):\n" +
          "  r=json.loads(l)\n" +
          "  c=r.get('celsius')\n" +
          "  if isinstance(r.get('station'),str) and type(c) in (int,float) and not isinstance(c,bool) and c==int(c):\n" +
          "    v+=1; s+=int(c)\n" +
          "print(json.dumps({'valid':v,'sum':s}))",
        file,
      ],
      { encoding: "utf8" },
    ),
  ) as { valid: number; sum: number };

describe("ops: a lab's module bundled into the deploy", () => {
  let s: Synthesized;
  beforeAll(() => {
    s = synth(OPS_CONTEXT, { ops: [FIXTURE] }, { bundle: true });
  }, 120_000);

  it("bundles the module with its npm dependency into the worker image's build context, beside the worker bundle", () => {
    const image = imageSource(s);
    expect(image).toMatchObject({ dockerFile: "Dockerfile", platform: "linux/arm64" });
    expect(readdirSync(image.directory).sort()).toEqual(["Dockerfile", "ops", "worker"]);
    expect(readdirSync(path.join(image.directory, "ops")).sort()).toEqual(["0-index.mjs", "registry.json"]);
    const op = readFileSync(path.join(image.directory, "ops", "0-index.mjs"), "utf8");
    expect(op.startsWith(ESM_REQUIRE_BANNER)).toBe(true);
    // zod is inside (its schema classes), not imported: the image has no node_modules.
    expect(op).toMatch(/ZodObject/);
    expect(op).not.toMatch(/from\s*["'](zod|cloudmill)["']/);
    const main = readFileSync(path.join(image.directory, "worker", "main.mjs"), "utf8");
    expect(main.startsWith(ESM_REQUIRE_BANNER)).toBe(true);
    expect(main).not.toMatch(/from\s*["']@aws-sdk\//);
    // The worker's item threads start from the file beside it.
    expect(readFileSync(path.join(image.directory, "worker", "itemThread.mjs"), "utf8").startsWith(ESM_REQUIRE_BANNER)).toBe(true);
    const dockerfile = readFileSync(path.join(image.directory, "Dockerfile"), "utf8");
    expect(dockerfile).toMatch(new RegExp(`^FROM node:22-bookworm-slim AS ${WORKER_BASE_STAGE}$`, "m"));
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^CMD \["node", "worker\/main\.mjs"\]$/m);
  });

  it("puts the same bundle in the splitter's and reducer's code, and none in the dead-letter function's", () => {
    const image = imageSource(s);
    const op = readFileSync(path.join(image.directory, "ops", "0-index.mjs"));
    for (const [name, files] of [
      // The splitter starts a thread for a lab op it maps inline, the reducer for one whose parts it folds.
      ["Splitter", ["index.mjs", "mapperThread.mjs", "ops"]],
      ["Reducer", ["index.mjs", "mapperThread.mjs", "ops"]],
    ] as const) {
      const dir = functionDir(s, name);
      expect(readdirSync(dir).sort(), name).toEqual(files);
      expect(readFileSync(path.join(dir, "ops", "0-index.mjs")).equals(op), name).toBe(true);
    }
    expect(readdirSync(functionDir(s, "DeadLetters"))).toEqual(["index.mjs"]);
  });

  it("points CLOUDMILL_OPS_MODULES of the splitter and reducer at /var/task/ops, of the worker at the image's /app/ops", () => {
    expect(functionEnv(s, "Splitter")["CLOUDMILL_OPS_MODULES"]).toBe('["/var/task/ops/0-index.mjs"]');
    expect(functionEnv(s, "Reducer")["CLOUDMILL_OPS_MODULES"]).toBe('["/var/task/ops/0-index.mjs"]');
    expect(functionEnv(s, "DeadLetters")["CLOUDMILL_OPS_MODULES"]).toBeUndefined();
    expect(workerEnv(s)["CLOUDMILL_OPS_MODULES"]).toBe('["/app/ops/0-index.mjs"]');
    expect(readFileSync(path.join(imageSource(s).directory, "Dockerfile"), "utf8")).toMatch(/^WORKDIR \/app$/m);
  });

  it("publishes the listing, the lab's op with a 16-hex digest beside the built-ins, to exactly _ops/registry.json at deploy", () => {
    const { call, listing, update } = publishedCall(s);
    const output = resource(s.template, "AWS::S3::Bucket", "PipelineOutputBucket").id;
    expect(call).toMatchObject({
      service: "S3",
      action: "putObject",
      parameters: { Bucket: `<${output}>`, Key: OPS_LISTING_KEY, ContentType: "application/json" },
    });
    expect(update).toEqual(call);
    const op = listing.ops.find((o) => o.name === "valid-readings");
    expect(op).toEqual({
      name: "valid-readings",
      digest: expect.stringMatching(/^[0-9a-f]{16}$/),
      description: "counts and sums the readings that pass the lab's schema",
      formats: ["jsonl"],
      params: expect.any(Array),
    });
    expect(listing.ops.map((o) => o.name)).toEqual(expect.arrayContaining(["count", "stats", "wordcount", "histogram", "grep"]));
    expect(s.stack.pipeline.opsListing).toEqual(listing);
    // The image carries the same listing.
    expect(JSON.parse(readFileSync(path.join(imageSource(s).directory, "ops", "registry.json"), "utf8"))).toEqual(listing);
    // Its physical id follows the listing, so a changed listing is put again.
    expect(call.physicalResourceId.id).toMatch(/^cloudmill-ops-[0-9a-f]{16}$/);
  });

  it("lets the publisher put that one object and nothing else", () => {
    const role = resource(s.template, "AWS::IAM::Role", "AWS679f53fac002430cb0da5b7982bd2287ServiceRole").id;
    const statements = Object.values(s.template.findResources("AWS::IAM::Policy"))
      .filter((p) => JSON.stringify(p["Properties"]["Roles"]).includes(role))
      .flatMap((p) => p["Properties"]["PolicyDocument"]["Statement"] as { Action: unknown; Resource: unknown }[]);
    const output = resource(s.template, "AWS::S3::Bucket", "PipelineOutputBucket").id;
    expect(statements.map((st) => [st.Action, flat(st.Resource)])).toEqual([["s3:PutObject", `<${output}>/_ops/registry.json`]]);
    expect(grantsOf(s.template, "AWS679f53fac002430cb0da5b7982bd2287ServiceRole")).toEqual({
      "s3:PutObject": [`<${output}>/_ops/registry.json`],
    });
  });

  it("publishes the built-ins when the lab has no ops, and sets CLOUDMILL_OPS_MODULES to []", () => {
    const none = synth(LAB_CONTEXT);
    const { listing } = publishedCall(none);
    expect(listing.ops.map((o) => o.name).sort()).toEqual([
      "checksum",
      "count",
      "distinct",
      "grep",
      "groupby",
      "histogram",
      "sort",
      "stats",
      "wordcount",
    ]);
    for (const o of listing.ops) expect(o.digest).toMatch(/^builtin-/);
    expect(functionEnv(none, "Reducer")["CLOUDMILL_OPS_MODULES"]).toBe("[]");
    expect(workerEnv(none)["CLOUDMILL_OPS_MODULES"]).toBe("[]");
  });
});

describe("ops: refusals, one line each", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "cloudmill-badops-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const synthOps = (ops: string[], extra: Record<string, unknown> = {}): void => {
    const app = new App({ context: { ...cdkJsonContext(), "aws:cdk:bundling-stacks": [] } });
    new CloudmillPipeline(new Stack(app, "Lab"), "Pipeline", { labName: "lab", ops, ...extra });
  };
  const refusal = (ops: string[], extra: Record<string, unknown> = {}): string => {
    try {
      synthOps(ops, extra);
    } catch (err) {
      return (err as Error).message;
    }
    throw new Error("synth did not fail");
  };

  it("a module that does not bundle: names it and esbuild's first error", () => {
    const bad = path.join(dir, "bad.mjs");
    writeFileSync(bad, 'import { nothing } from "no-such-package-cloudmill";\nexport const x = nothing;\n');
    const message = refusal([bad]);
    expect(message).toMatch(
      new RegExp(
        `^cloudmill: ops module ${bad.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} does not bundle: Could not resolve "no-such-package-cloudmill"`,
      ),
    );
    expect(message).not.toContain("\n");
  });

  it("a module that bundles but fails when loaded, or exports no op: says so", () => {
    const throws = path.join(dir, "throws.mjs");
    writeFileSync(throws, 'throw new Error("the lab module broke");\n');
    const m1 = refusal([throws]);
    expect(m1).toMatch(/^cloudmill: ops: .*throws\.mjs.*the lab module broke/);
    expect(m1).not.toContain("\n");
    const empty = path.join(dir, "empty.mjs");
    writeFileSync(empty, "export const notAnOp = 1;\n");
    expect(refusal([empty])).toMatch(/^cloudmill: ops: .*empty\.mjs: exports no op/);
  });

  it("a missing module, or a Dockerfile stage that does not start from cloudmill's", () => {
    expect(refusal(["./no/such/ops.ts"])).toBe(
      `cloudmill: ops: no file at "./no/such/ops.ts" (resolved to ${path.resolve("./no/such/ops.ts")})`,
    );
    const dockerfile = path.join(dir, "worker.Dockerfile");
    writeFileSync(dockerfile, "FROM ubuntu:24.04\nRUN true\n");
    expect(refusal([], { workerDockerfile: dockerfile })).toBe(
      `cloudmill: workerDockerfile ${dockerfile} must start with "FROM cloudmill-worker" (cloudmill's worker stage), got "FROM ubuntu:24.04"`,
    );
  });
});

describe("the workerDockerfile escape hatch", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "cloudmill-dockerfile-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("appends the lab's stage after cloudmill's and puts its folder in the context as lab/, without node_modules", () => {
    const lab = path.join(dir, "docker");
    cpSync(path.join(REPO_ROOT, "test/fixtures/lab-ops"), path.join(lab, "ops"), { recursive: true });
    writeFileSync(path.join(lab, "policy.xml"), "<policymap/>\n");
    cpSync(path.join(REPO_ROOT, "package.json"), path.join(lab, "node_modules", "x", "package.json"));
    const stage =
      "# The lab's tools\nFROM cloudmill-worker\nUSER root\nRUN apt-get update && apt-get install -y imagemagick\n" +
      "COPY lab/policy.xml /etc/ImageMagick-6/policy.xml\nUSER node\n";
    writeFileSync(path.join(lab, "worker.Dockerfile"), `# syntax=docker/dockerfile:1\n${stage}`);
    const s = synth(LAB_CONTEXT, { workerDockerfile: path.join(lab, "worker.Dockerfile") });
    const image = imageSource(s);
    const dockerfile = readFileSync(path.join(image.directory, "Dockerfile"), "utf8");
    const base = readFileSync(path.join(REPO_ROOT, "worker/Dockerfile"), "utf8");
    expect(dockerfile.startsWith(base)).toBe(true);
    expect(dockerfile.trimEnd().endsWith(stage.trimEnd())).toBe(true);
    expect(dockerfile.match(/^# syntax=/gm)).toHaveLength(1);
    expect(readdirSync(path.join(image.directory, "lab")).sort()).toEqual(["ops", "policy.xml", "worker.Dockerfile"]);
  });

  it("leaves the cloud assembly out when the lab's Dockerfile sits in the folder that holds it", () => {
    const root = mkdtempSync(path.join(dir, "lab-root-"));
    writeFileSync(path.join(root, "worker.Dockerfile"), "FROM cloudmill-worker\nRUN true\n");
    writeFileSync(path.join(root, "notes.txt"), "kept\n");
    const app = new App({ outdir: path.join(root, "cdk.out"), context: { ...cdkJsonContext(), "aws:cdk:bundling-stacks": [] } });
    new CloudmillPipeline(new Stack(app, "Lab"), "Pipeline", { labName: "lab", workerDockerfile: path.join(root, "worker.Dockerfile") });
    const assembly = app.synth();
    const manifest = JSON.parse(readFileSync(path.join(assembly.directory, "Lab.assets.json"), "utf8")) as {
      dockerImages: Record<string, { source: { directory: string } }>;
    };
    const context = path.join(assembly.directory, Object.values(manifest.dockerImages)[0]!.source.directory);
    expect(readdirSync(path.join(context, "lab")).sort()).toEqual(["notes.txt", "worker.Dockerfile"]);
  });
  it("leaves secret-looking files, and what the folder's .dockerignore names, out of lab/ and the whole assembly", () => {
    const root = mkdtempSync(path.join(dir, "lab-secrets-"));
    const lab = path.join(root, "docker");
    const files: Record<string, string> = {
      "worker.Dockerfile": "FROM cloudmill-worker\nCOPY lab/ /opt/lab/\n",
      ".dockerignore": "# the lab's own\n*.csv\n!keep.csv\nscratch/\n",
      "tool.conf": "kept\n",
      "keep.csv": "kept\n",
      "big.csv": "left out by .dockerignore\n",
      "scratch/notes.txt": "left out by .dockerignore\n",
      "nested/tool.conf": "kept\n",
      "nested/big.csv": "kept: *.csv matches at the top only, as in Docker\n",
      ".env": "SECRET=1\n",
      ".env.local": "SECRET=1\n",
      ".npmrc": "//registry.npmjs.org/:_authToken=secret\n",
      ".netrc": "machine x login y password z\n",
      ".aws/credentials": "[default]\naws_secret_access_key=secret\n",
      ".ssh/config": "Host *\n",
      id_ed25519: "-----BEGIN OPENSSH PRIVATE KEY-----\n",
      "nested/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\n",
      "nested/server.pem": "-----BEGIN PRIVATE KEY-----\n",
      "nested/.env": "SECRET=1\n",
    };
    for (const [name, body] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(lab, name)), { recursive: true });
      writeFileSync(path.join(lab, name), body);
    }
    const app = new App({ outdir: path.join(root, "cdk.out"), context: { ...cdkJsonContext(), "aws:cdk:bundling-stacks": [] } });
    new CloudmillPipeline(new Stack(app, "Lab"), "Pipeline", { labName: "lab", workerDockerfile: path.join(lab, "worker.Dockerfile") });
    const assembly = app.synth();
    const manifest = JSON.parse(readFileSync(path.join(assembly.directory, "Lab.assets.json"), "utf8")) as {
      dockerImages: Record<string, { source: { directory: string } }>;
    };
    const context = path.join(assembly.directory, Object.values(manifest.dockerImages)[0]!.source.directory);
    const listed = (readdirSync(path.join(context, "lab"), { recursive: true, withFileTypes: true }) as Dirent[])
      .filter((e) => e.isFile())
      .map((e) => path.relative(path.join(context, "lab"), path.join(e.parentPath, e.name)))
      .sort();
    expect(listed).toEqual([".dockerignore", "keep.csv", "nested/big.csv", "nested/tool.conf", "tool.conf", "worker.Dockerfile"]);
    // Nor anywhere else in the cloud assembly (the staging folder, the asset CDK hashes).
    const everywhere = (readdirSync(assembly.directory, { recursive: true, withFileTypes: true }) as Dirent[]).map((e) => e.name);
    for (const secret of [".env", ".env.local", ".npmrc", ".netrc", ".aws", ".ssh", "credentials", "id_ed25519", "id_rsa", "server.pem"]) {
      expect(everywhere).not.toContain(secret);
    }
  });
});

/**
 * The Node each run uses, and the version every role must report. Deployed code runs on Node 22
 * (nodejs22.x, node:22) while this machine's is 20: "runs on both" is checked, not assumed.
 */
const RUNTIMES = [
  { runtime: "the Node running the tests", node: (): string => process.execPath, version: process.version },
  // Fetched from the registry when absent (helpers/node22.ts); when it cannot be, the test fails.
  { runtime: "Node 22, as deployed", node: node22, version: `v${NODE22_VERSION}` },
];

describe("the staged code, run as Lambda and the image would run it, against the emulator", () => {
  const emu = useEmulator();
  let s: Synthesized;
  let staged: string;
  beforeAll(() => {
    s = synth(OPS_CONTEXT, { ops: [FIXTURE] }, { bundle: true });
    staged = mkdtempSync(path.join(os.tmpdir(), "cloudmill-staged-"));
  }, 120_000);
  afterAll(() => rmSync(staged, { recursive: true, force: true }));

  /** One synth, run on each runtime in a folder of its own against buckets and queues of its own. */
  const scenario = async ({ node: nodeOf, version }: (typeof RUNTIMES)[number]): Promise<void> => {
    const node = nodeOf();
    const work = mkdtempSync(path.join(staged, "run-"));
    // Copies outside cdk.out and the repository: nothing can be resolved from a node_modules.
    const code = (from: string, name: string): string => {
      const to = path.join(work, name);
      cpSync(from, to, { recursive: true });
      return to;
    };
    const splitterDir = code(functionDir(s, "Splitter"), "splitter");
    const reducerDir = code(functionDir(s, "Reducer"), "reducer");
    const imageDir = code(imageSource(s).directory, "image");

    const input = await emu.freshBucket();
    const output = await emu.freshBucket();
    const tasks = await emu.freshQueue({ maxReceiveCount: 3 });
    const partEvents = await emu.freshQueue({ maxReceiveCount: 3 });
    const continuations = await emu.freshQueue({ maxReceiveCount: 3 });
    const outputRef = resource(s.template, "AWS::S3::Bucket", "PipelineOutputBucket").id;
    const queueRef = resource(s.template, "AWS::SQS::Queue", "PipelineTaskQueue").id;
    const partsRef = resource(s.template, "AWS::SQS::Queue", "PipelinePartsQueue").id;
    const continuationsRef = resource(s.template, "AWS::SQS::Queue", "PipelineContinuationQueue").id;
    /** The stack's environment for a role, references to the emulator's resources, its code root to where the copy is. */
    const envFor = (env: Env, root: string, copy: string): NodeJS.ProcessEnv => {
      // The emulator has no ECS: the splitter runs without a fleet to wake (the backlog alone scales it).
      // The region (AWS::Region) is the emulator's, set below.
      const fleetNames = new Set(["CLOUDMILL_WORKER_CLUSTER", "CLOUDMILL_WORKER_SERVICE", "AWS_REGION"]);
      const values = Object.fromEntries(
        Object.entries(env)
          .filter(([k]) => !fleetNames.has(k))
          .map(([k, v]) => {
            const ref = (v as { Ref?: string }).Ref;
            if (ref === outputRef) return [k, output];
            if (ref === queueRef) return [k, tasks.url];
            if (ref === partsRef) return [k, partEvents.url];
            if (ref === continuationsRef) return [k, continuations.url];
            // The stack's input bucket (a reference joined with extraInputBuckets, none here): the emulator's.
            if (k === "CLOUDMILL_INPUT_BUCKETS") return [k, input];
            expect(typeof v, k).toBe("string");
            return [k, k === "CLOUDMILL_OPS_MODULES" ? (v as string).split(`${root}/`).join(`${copy}/`) : (v as string)];
          }),
      );
      return {
        PATH: process.env["PATH"],
        ...values,
        AWS_ENDPOINT_URL: emu.emulator.endpoint,
        AWS_REGION: "us-east-1",
        AWS_ACCESS_KEY_ID: "cloudmill",
        AWS_SECRET_ACCESS_KEY: "cloudmill",
      };
    };
    /** Imports a staged index.mjs in a fresh Node process and calls its handler with `event`, as Lambda does. */
    const driver = path.join(work, "invoke.mjs");
    writeFileSync(
      driver,
      'import { pathToFileURL } from "node:url";\n' +
        'import { writeFileSync } from "node:fs";\n' +
        "const [file, event, out] = process.argv.slice(2);\n" +
        "const { handler } = await import(pathToFileURL(file).href);\n" +
        // Lambda's context: the function's five minutes, counting down.
        "const ends = Date.now() + 300000;\n" +
        "const context = { getRemainingTimeInMillis: () => ends - Date.now() };\n" +
        // Which Node ran it, beside what the handler returned.
        "const returned = (await handler(JSON.parse(event), context)) ?? null;\n" +
        "writeFileSync(out, JSON.stringify({ node: process.version, returned }));\n",
    );
    const invoke = async (dir: string, env: NodeJS.ProcessEnv, event: unknown): Promise<unknown> => {
      // The handler's logs go to stdout, as in Lambda; its return value to a file.
      const out = path.join(work, "returned.json");
      const r = await runProcess(node, [driver, path.join(dir, "index.mjs"), JSON.stringify(event), out], { cwd: dir, env });
      expect(r.code, r.stderr).toBe(0);
      const ran = JSON.parse(readFileSync(out, "utf8")) as { node: string; returned: unknown };
      expect(ran.node, path.basename(dir)).toBe(version);
      return ran.returned;
    };

    // The lab's data: readings, a fifth of them failing the schema, over many 4 KiB chunks.
    const lines = [
      '{"station":"north","celsius":-3}',
      '{"station":"north","celsius":"n/a"}',
      '{"station":"south","celsius":21}',
      '{"celsius":4}',
      '{"station":"east","celsius":17}',
    ];
    const body = `${Array.from({ length: 3000 }, (_, i) => lines[(i * 7) % lines.length]).join("\n")}\n`;
    writeFileSync(path.join(work, "readings.jsonl"), body);
    const key = "valid-readings/site-a/readings.jsonl";
    await emu.s3.send(new PutObjectCommand({ Bucket: input, Key: key, Body: body }));

    // Splitter: the S3 event Lambda would get.
    const s3Event = { Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: input }, object: { key, size: body.length } } }] };
    const splitEnv = envFor(functionEnv(s, "Splitter"), "/var/task", splitterDir);
    const outcomes = (await invoke(splitterDir, splitEnv, s3Event)) as { jobId: string }[];
    expect(outcomes).toHaveLength(1);
    const jobId = outcomes[0]!.jobId;
    const read = async (k: string) =>
      JSON.parse(await (await emu.s3.send(new GetObjectCommand({ Bucket: output, Key: k }))).Body!.transformToString()) as Record<
        string,
        unknown
      >;
    const chunks = (await read(manifestKey(jobId)))["chunks"] as number;
    expect(chunks).toBeGreaterThan(10);

    // Worker: the image's CMD, `node worker/main.mjs`, from the image's WORKDIR.
    const worker = spawnChild(node, [path.join(imageDir, "worker", "main.mjs")], {
      cwd: imageDir,
      env: envFor(workerEnv(s), "/app", imageDir),
      name: "staged worker",
    });
    const started = JSON.parse(await worker.waitForLine((l) => l.includes('"worker started"'), 60_000)) as { node: string };
    expect(started.node, "the staged worker's Node").toBe(version);
    const parts = await waitFor(
      "every chunk's part from the staged worker",
      async () => {
        const r = await emu.s3.send(new ListObjectsV2Command({ Bucket: output, Prefix: `_work/${jobId}/parts/` }));
        const keys = (r.Contents ?? []).map((o) => o.Key!);
        return keys.length === chunks ? keys : undefined;
      },
      90_000,
    );

    // Reducer: a part-created notification, as the parts queue delivers it.
    const reduce = async (partKey: string): Promise<unknown> => {
      const partEvent = { Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: output }, object: { key: partKey } } }] };
      const sqsEvent = { Records: [{ messageId: "m-1", body: JSON.stringify(partEvent), attributes: { ApproximateReceiveCount: "1" } }] };
      return invoke(reducerDir, envFor(functionEnv(s, "Reducer"), "/var/task", reducerDir), sqsEvent);
    };
    expect(await reduce(parts.at(-1)!)).toEqual({ batchItemFailures: [] });

    const status = await read(`${key}/status.json`);
    expect(status).toMatchObject({ state: "succeeded", op: "valid-readings", chunks });
    // The digest the deployed code computed is the one synth published.
    const published = publishedCall(s).listing.ops.find((o) => o.name === "valid-readings")!;
    expect(status["opDigest"]).toBe(published.digest);
    const expected = pythonReference(path.join(work, "readings.jsonl"));
    expect(expected.valid).toBe(1800);
    expect(await read(`${key}/result.json`)).toEqual(expected);

    // The lab's task, one call per reading, on the bundled item threads beside the worker's main.
    const taskKey = "to-fahrenheit/site-a/readings.jsonl";
    await emu.s3.send(new PutObjectCommand({ Bucket: input, Key: taskKey, Body: body }));
    const taskEvent = {
      Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: input }, object: { key: taskKey, size: body.length } } }],
    };
    const taskJob = ((await invoke(splitterDir, splitEnv, taskEvent)) as { jobId: string }[])[0]!.jobId;
    const taskChunks = (await read(manifestKey(taskJob)))["chunks"] as number;
    const taskParts = await waitFor(
      "every chunk's part of the task job",
      async () => {
        const r = await emu.s3.send(new ListObjectsV2Command({ Bucket: output, Prefix: `_work/${taskJob}/parts/` }));
        const keys = (r.Contents ?? []).map((o) => o.Key!);
        return keys.length === taskChunks ? keys : undefined;
      },
      90_000,
    );
    worker.child.kill("SIGTERM");
    expect((await worker.exited).code).toBe(0);
    expect(await reduce(taskParts.at(-1)!)).toEqual({ batchItemFailures: [] });
    const task = (await read(`${taskKey}/result.json`)) as { items: number; results: unknown[]; errors: { index: number; code: string }[] };
    const python = JSON.parse(
      execFileSync(
        "python3",
        [
          "-c",
          "import json,sys\n" +
            "ok=[];bad=[]\n" +
            "for i,l in enumerate(open(sys.argv[1])):\n" +
            "  r=json.loads(l); c=r.get('celsius')\n" +
            "  if isinstance(r.get('station'),str) and type(c) is int: ok.append({'station':r['station'],'fahrenheit':c*9/5+32})\n" +
            "  else: bad.append(i)\n" +
            "print(json.dumps({'results':ok,'bad':bad}))",
          path.join(work, "readings.jsonl"),
        ],
        { encoding: "utf8" },
      ),
    ) as { results: unknown[]; bad: number[] };
    expect(task.items).toBe(3000);
    expect(task.results).toEqual(python.results);
    expect(task.errors.map((e) => [e.index, e.code])).toEqual(python.bad.map((i) => [i, "ITEM_FAILED"]));

    /**
     * A small upload the staged splitter maps where it starts (no worker runs now), writing the
     * parts a worker would; the reducer ends it. Its status, and its result.
     */
    const inline = async (key: string, text: string | Buffer): Promise<{ status: unknown; result: unknown }> => {
      await emu.s3.send(new PutObjectCommand({ Bucket: input, Key: key, Body: text }));
      const event = { Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: input }, object: { key, size: text.length } } }] };
      const job = ((await invoke(splitterDir, splitEnv, event)) as { jobId: string }[])[0]!.jobId;
      const jobParts = (await emu.s3.send(new ListObjectsV2Command({ Bucket: output, Prefix: `_work/${job}/parts/` }))).Contents!;
      expect(jobParts.length).toBe((await read(manifestKey(job)))["chunks"]);
      expect(await reduce(jobParts.at(-1)!.Key!)).toEqual({ batchItemFailures: [] });
      return { status: await read(`${key}/status.json`), result: await read(`${key}/result.json`) };
    };
    // A built-in op: the reference agrees.
    const notes = textOf(40_000, 21);
    const small = await inline("wordcount/site-a/notes.txt", notes);
    expect(small.status).toMatchObject({ state: "succeeded", ranOn: "lambda" });
    expect(small.result).toEqual(refWordcount(notes));
    // The lab's inline op, which counts the lines it maps off the main thread: the staged splitter
    // maps every line on the mapper thread bundled beside its index.mjs.
    expect(existsSync(path.join(splitterDir, "mapperThread.mjs"))).toBe(true);
    const offMain = await inline("lines-off-main-thread/site-a/readings.jsonl", body);
    expect(offMain.status).toMatchObject({ state: "succeeded", ranOn: "lambda" });
    expect(offMain.result).toBe(body.split("\n").length - 1);
    expect(existsSync(path.join(work, "node_modules"))).toBe(false);
  };

  // Side by side: each mostly waits (the worker's last long poll ends its stop), so two take the time of one.
  for (const r of RUNTIMES) {
    it.concurrent(
      `on ${r.runtime}: splitter handler, worker process and reducer handler run a job of the lab's op, then of its task; Python agrees`,
      () => scenario(r),
      240_000,
    );
  }
});
