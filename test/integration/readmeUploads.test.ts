/**
 * The README's uploads to `cloudmill dev` other than the AWS CLI's, run as the README shows them
 * (its code blocks read from README.md, only the port changed): a boto3 script, a presigned PUT
 * made with boto3 and sent with curl, and a folder copied up and counted as one job through a
 * job spec over its prefix. Answers are checked against the reference and awk.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, expectMatchesReference, freePort, requireBuild, ROOT, spawnChild, textOf, waitFor, type Child } from "../helpers/devCloud.js";

const run = promisify(execFile);
const TIMEOUT = 150_000;
/** The endpoint the README's commands name. */
const README_ENDPOINT = "http://127.0.0.1:4566";

let dir: string;
let dev: Child;
let endpoint: string;
let env: NodeJS.ProcessEnv;
let blocks: { lang: string; code: string }[];

/** The README's one code block of `lang` that holds `marker`, with the dev cloud's port. */
const block = (lang: string, marker: string): string => {
  const found = blocks.filter((b) => b.lang === lang && b.code.includes(marker));
  expect(found, `README.md: one \`\`\`${lang} block with ${marker}`).toHaveLength(1);
  expect(found[0]!.code).toContain(README_ENDPOINT);
  return found[0]!.code.split(README_ENDPOINT).join(endpoint);
};

const sh = async (line: string): Promise<string> => (await run("sh", ["-c", line], { cwd: dir, env, encoding: "utf8" })).stdout;

/** Runs a block's lines in one shell but the last, then its last line until it answers (a job takes a moment). */
const runBlock = async (code: string): Promise<string> => {
  const lines = code.trim().split("\n");
  await sh(lines.slice(0, -1).join("\n"));
  return waitFor(`\`${lines.at(-1)}\``, () => sh(lines.at(-1)!).catch(() => undefined), 60_000, 250);
};

const awkLines = async (...files: string[]): Promise<number> =>
  Number((await run("awk", ["END { print NR }", ...files], { cwd: dir, encoding: "utf8" })).stdout.trim());

beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-readme-"));
  blocks = [...(await readFile(path.join(ROOT, "README.md"), "utf8")).matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({
    lang: m[1]!,
    code: m[2]!,
  }));
  env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("AWS_") && !k.startsWith("CLOUDMILL_"))),
    HOME: dir,
    AWS_CONFIG_FILE: path.join(dir, "aws-config"),
    AWS_SHARED_CREDENTIALS_FILE: path.join(dir, "aws-credentials"),
    // As the README exports them.
    AWS_ACCESS_KEY_ID: "cloudmill",
    AWS_SECRET_ACCESS_KEY: "cloudmill",
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_PAGER: "",
  };
  const port = await freePort();
  dev = spawnChild(process.execPath, [BIN, "dev", "--port", String(port), "--workers", "1"], { name: "cloudmill dev" });
  await dev.waitForLine((l) => l.includes("emulated S3 and SQS at"), 60_000);
  endpoint = `http://127.0.0.1:${port}`;
}, 90_000);

afterAll(async () => {
  if (dev && dev.child.exitCode === null && dev.child.signalCode === null) {
    dev.child.kill("SIGINT");
    await dev.exited;
  }
  await rm(dir, { recursive: true, force: true });
});

describe("the README's uploads to cloudmill dev", () => {
  it(
    "the boto3 script uploads data.txt to wordcount/, waits, and prints the reference's wordcount",
    async () => {
      const data = textOf(90 * 1024, 41);
      await writeFile(path.join(dir, "data.txt"), data);
      const out = (await run("python3", ["-c", block("python", "upload_file(")], { cwd: dir, env, encoding: "utf8" })).stdout;
      const [state, ...json] = out.trim().split(" ");
      expect(state).toBe("succeeded");
      expectMatchesReference("wordcount", {}, data, JSON.parse(json.join(" ")));
    },
    TIMEOUT,
  );

  it(
    "curl PUTs to a presigned URL boto3 made, and the job counts the lines awk counts",
    async () => {
      await writeFile(path.join(dir, "data.txt"), textOf(70 * 1024, 42));
      const status = JSON.parse(await runBlock(block("sh", "generate_presigned_url"))) as { state: string };
      const final =
        status.state === "succeeded"
          ? status
          : await waitFor(
              "the job's end",
              async () => {
                const s = JSON.parse(await sh(`aws --endpoint-url ${endpoint} s3 cp s3://cloudmill-output/count/data.txt/status.json -`));
                return s.state === "running" ? undefined : (s as { state: string });
              },
              60_000,
              250,
            );
      expect(final.state).toBe("succeeded");
      const result = JSON.parse(await sh(`aws --endpoint-url ${endpoint} s3 cp s3://cloudmill-output/count/data.txt/result.json -`));
      expect(result).toEqual({ records: await awkLines("data.txt") });
    },
    TIMEOUT,
  );

  it(
    "a folder under _inputs/ and a job spec naming its prefix make one job over every file",
    async () => {
      await mkdir(path.join(dir, "logs"));
      await writeFile(path.join(dir, "logs", "a.txt"), textOf(20 * 1024, 43));
      await writeFile(path.join(dir, "logs", "b.txt"), textOf(30 * 1024, 44));
      const result = JSON.parse(await runBlock(block("sh", "_inputs/logs/")));
      expect(result).toEqual({ records: await awkLines("logs/a.txt", "logs/b.txt") });
      // The copy under _inputs/ started no job of its own.
      expect(await sh(`aws --endpoint-url ${endpoint} s3 ls --recursive s3://cloudmill-output/_inputs/ || true`)).toBe("");
    },
    TIMEOUT,
  );
});
