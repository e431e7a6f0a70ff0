/**
 * `cloudmill dev` as a user runs it: the installed bin in a child process, driven by the real
 * AWS CLI (Debian's awscli at /usr/bin/aws) with dummy credentials and no user config. An
 * `aws s3 cp` upload under wordcount/ yields result.json equal to the reference implementation's
 * answer (test/helpers/reference.ts), as `cloudmill run --op wordcount` on the same file does;
 * Ctrl-C (SIGINT) stops everything and exits 0.
 * The commands are the ones README.md shows.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BIN,
  chunksOf,
  expectMatchesReference,
  freePort,
  requireBuild,
  ROOT,
  spawnChild,
  textOf,
  waitFor,
  type Child,
} from "../helpers/devCloud.js";

const run = promisify(execFile);
const AWS = "/usr/bin/aws";
const TIMEOUT = 150_000;

let dir: string;
let dev: Child | undefined;
let endpoint: string;
/** The AWS CLI's environment: dummy credentials, and nothing from the user's own config. */
let awsEnv: NodeJS.ProcessEnv;

/** `aws --endpoint-url <dev> ...args` in the temp dir; resolves with stdout, rejects on a non-zero exit. */
const aws = async (...args: string[]): Promise<string> => {
  const { stdout } = await run(AWS, ["--endpoint-url", endpoint, ...args], { cwd: dir, env: awsEnv, maxBuffer: 16 * 1024 * 1024 });
  return stdout;
};

/** Processes whose parent is pid (from /proc). */
const childrenOf = async (pid: number): Promise<number[]> => {
  const out: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    // pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === pid) out.push(Number(entry));
  }
  return out;
};

/** Whether a process exists and is not a zombie. */
const alive = async (pid: number): Promise<boolean> => {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat !== "" && stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
};

beforeAll(async () => {
  requireBuild();
  if (!existsSync(AWS)) throw new Error(`${AWS} is missing: apt-get install -y awscli`);
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-awscli-"));
  awsEnv = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("AWS_") && !k.startsWith("CLOUDMILL_"))),
    HOME: dir,
    AWS_CONFIG_FILE: path.join(dir, "aws-config"),
    AWS_SHARED_CREDENTIALS_FILE: path.join(dir, "aws-credentials"),
    AWS_ACCESS_KEY_ID: "cloudmill",
    AWS_SECRET_ACCESS_KEY: "cloudmill",
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_PAGER: "",
  };
});

afterAll(async () => {
  if (dev && dev.child.exitCode === null && dev.child.signalCode === null) {
    dev.child.kill("SIGKILL");
    await dev.exited;
  }
  await rm(dir, { recursive: true, force: true });
});

describe("cloudmill dev driven by the AWS CLI", () => {
  it(
    "aws s3 cp data.txt s3://cloudmill-input/wordcount/data.txt gives the reference's wordcount, as cloudmill run --op wordcount does",
    async () => {
      const data = textOf(200 * 1024, 31);
      const chunks = chunksOf(data.length, 64 * 1024);
      expect(chunks).toBeGreaterThan(1);
      await writeFile(path.join(dir, "data.txt"), data);

      const port = await freePort();
      dev = spawnChild(process.execPath, [BIN, "dev", "--port", String(port), "--workers", "2", "--chunk-size", "64KiB", "--verbose"], {
        name: "cloudmill dev",
      });
      const banner = await dev.waitForLine((l) => l.includes("emulated S3 and SQS at"), 60_000);
      endpoint = `http://127.0.0.1:${port}`;
      expect(banner).toContain(endpoint);

      await aws("s3", "cp", "data.txt", "s3://cloudmill-input/wordcount/data.txt");

      const status = await waitFor(
        "a final status.json via aws s3 cp",
        async () => {
          const text = await aws("s3", "cp", "s3://cloudmill-output/wordcount/data.txt/status.json", "-").catch(() => undefined);
          if (text === undefined) return undefined;
          const s = JSON.parse(text) as { state: string; chunks: number; done: number };
          return s.state === "running" ? undefined : s;
        },
        90_000,
        500,
      );
      expect(status).toMatchObject({ state: "succeeded", chunks, done: chunks });

      const listing = await aws("s3", "ls", "s3://cloudmill-output/wordcount/data.txt/");
      expect(listing).toMatch(/ result\.json$/m);
      expect(listing).toMatch(/ status\.json$/m);

      const fromCloud = JSON.parse(await aws("s3", "cp", "s3://cloudmill-output/wordcount/data.txt/result.json", "-")) as unknown;
      expectMatchesReference("wordcount", {}, data, fromCloud);
      // The local engine agrees, checked against the same reference (not used as the expectation).
      const { stdout } = await run(process.execPath, [BIN, "run", path.join(dir, "data.txt"), "--op", "wordcount"], { cwd: ROOT });
      expectMatchesReference("wordcount", {}, data, JSON.parse(stdout));

      // A folder copied up whole starts a job per file, none for its hidden ones (.DS_Store, .git/, _SUCCESS).
      const site = path.join(dir, "site");
      await mkdir(path.join(site, ".git"), { recursive: true });
      await writeFile(path.join(site, "notes.txt"), "alpha beta\nbeta\n");
      for (const hidden of [".DS_Store", "_SUCCESS", ".git/config"]) await writeFile(path.join(site, hidden), "not data\n");
      await aws("s3", "cp", "--recursive", "site", "s3://cloudmill-input/wordcount/site/");
      // Each is seen and left (the splitter's log, under --verbose), as the folder's notes.txt starts its job.
      for (const hidden of [".DS_Store", "_SUCCESS", ".git/config"])
        await waitFor(
          `the splitter to leave ${hidden}`,
          async () => dev!.stderr.find((l) => l.includes(`"key":"wordcount/site/${hidden}"`) && l.includes('"kind":"ignored"')),
          30_000,
          100,
        );
      const notes = await waitFor(
        "the folder's notes.txt job",
        async () => {
          const text = await aws("s3", "cp", "s3://cloudmill-output/wordcount/site/notes.txt/status.json", "-").catch(() => undefined);
          const s = text === undefined ? undefined : (JSON.parse(text) as { state: string });
          return s && s.state !== "running" ? s : undefined;
        },
        60_000,
        500,
      );
      expect(notes.state).toBe("succeeded");
      const outputs = await aws("s3", "ls", "--recursive", "s3://cloudmill-output/wordcount/site/");
      expect(
        outputs
          .split("\n")
          .filter(Boolean)
          .map((l) => l.split(/\s+/).at(-1))
          .sort(),
      ).toEqual(["wordcount/site/notes.txt/result.json", "wordcount/site/notes.txt/status.json"]);

      // Ctrl-C: the dev process stops its workers and exits 0, promptly, leaving no process behind.
      const workers = await childrenOf(dev.child.pid!);
      expect(workers.length).toBe(2);
      const sent = Date.now();
      dev.child.kill("SIGINT");
      const exit = await Promise.race([dev.exited, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 20_000))]);
      expect(exit, dev.stderr.join("\n")).toEqual({ code: 0, signal: null });
      // Nothing but cloudmill's own lines: no Node or SDK warning on a supported Node.
      expect(dev.stderr.join("\n")).not.toMatch(/Warning/);
      expect(Date.now() - sent).toBeLessThan(15_000);
      await waitFor(
        "the worker processes to be gone",
        async () => ((await Promise.all(workers.map(alive))).some(Boolean) ? undefined : true),
        5_000,
        100,
      );
    },
    TIMEOUT,
  );

  it(
    "an idle lab: cloudmill dev --workers 0 answers a small upload from the splitter alone, wakes a worker for a large one, and reads an --extra-input-bucket",
    async () => {
      const small = textOf(150 * 1024, 32);
      const large = textOf(400 * 1024, 33);
      await writeFile(path.join(dir, "small.txt"), small);
      await writeFile(path.join(dir, "large.txt"), large);
      const port = await freePort();
      const args = [
        "dev",
        "--port",
        String(port),
        "--workers",
        "0",
        "--max-workers",
        "1",
        "--chunk-size",
        "64KiB",
        "--extra-input-bucket",
        "lab-shared",
      ];
      const idle = spawnChild(process.execPath, [BIN, ...args, "--inline-max-bytes", "256KiB"], { name: "cloudmill dev (idle)" });
      try {
        await idle.waitForLine((l) => l.includes("emulated S3 and SQS at"), 60_000);
        endpoint = `http://127.0.0.1:${port}`;
        const finalStatus = (key: string) =>
          waitFor(
            `a final status of ${key}`,
            async () => {
              const text = await aws("s3", "cp", `s3://cloudmill-output/${key}/status.json`, "-").catch(() => undefined);
              const status = text === undefined ? undefined : (JSON.parse(text) as { state: string; ranOn?: string });
              return status?.state === "running" ? undefined : status;
            },
            90_000,
            250,
          );
        const resultOf = async (key: string) =>
          JSON.parse(await aws("s3", "cp", `s3://cloudmill-output/${key}/result.json`, "-")) as unknown;

        await aws("s3", "cp", "small.txt", "s3://cloudmill-input/wordcount/small.txt");
        expect(await finalStatus("wordcount/small.txt")).toMatchObject({ state: "succeeded", ranOn: "lambda" });
        expectMatchesReference("wordcount", {}, small, await resultOf("wordcount/small.txt"));
        expect(await childrenOf(idle.child.pid!)).toEqual([]);

        await aws("s3", "cp", "large.txt", "s3://cloudmill-input/wordcount/large.txt");
        expect(await finalStatus("wordcount/large.txt")).toMatchObject({ state: "succeeded", ranOn: "fleet" });
        expectMatchesReference("wordcount", {}, large, await resultOf("wordcount/large.txt"));
        expect((await childrenOf(idle.child.pid!)).length).toBe(1);

        // A bucket named with --extra-input-bucket may be read; the output bucket may not, as in the stack.
        await aws("s3", "mb", "s3://lab-shared");
        await aws("s3", "cp", "small.txt", "s3://lab-shared/small.txt");
        const specs = {
          "shared-1": { op: "wordcount", inputs: ["s3://lab-shared/small.txt"] },
          "output-1": { op: "count", inputs: ["s3://cloudmill-output/wordcount/small.txt/result.json"] },
        };
        for (const [id, spec] of Object.entries(specs)) {
          await writeFile(path.join(dir, `${id}.json`), JSON.stringify(spec));
          await aws("s3", "cp", `${id}.json`, `s3://cloudmill-input/_jobs/${id}.json`);
        }
        expect(await finalStatus("_jobs/shared-1")).toMatchObject({ state: "succeeded" });
        expectMatchesReference("wordcount", {}, small, await resultOf("_jobs/shared-1"));
        expect(await finalStatus("_jobs/output-1")).toMatchObject({
          state: "failed",
          error: {
            code: "INVALID_SPEC",
            message: expect.stringContaining("bucket cloudmill-output is not one this stack reads inputs from"),
          },
        });
      } finally {
        idle.child.kill("SIGINT");
        await idle.exited;
      }
    },
    TIMEOUT,
  );
});
