/**
 * The README's SDK section runs as shown against `cloudmill dev`: its
 * three-line example, its CLI session (each `$ npx cloudmill ...` line, run through the
 * installed bin), and examples/sdk.ts. Needs the compiled dist/ (`npm run build`).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliIO } from "../../lib/cli/io.js";
import { runCli } from "../../lib/cli/main.js";
import { startDevCloud, type DevCloud } from "../../lib/dev/devCloud.js";
import { silentLogger } from "../../lib/core/log.js";
import { runProcess, shellWords } from "../helpers/processes.js";
import { childEnv } from "./support.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const BIN = path.join(ROOT, "bin/cloudmill.js");
/** The README's SDK section, from its heading to the next one. */
const README = ((text: string) => {
  const start = text.indexOf("## From a script or a notebook: the SDK");
  if (start < 0) throw new Error("README.md has no SDK section");
  const end = text.indexOf("\n## ", start + 3);
  return text.slice(start, end < 0 ? undefined : end);
})(await readFile(path.join(ROOT, "README.md"), "utf8"));
const JOB_ID = /job-\d{8}T\d{6}-[0-9a-f]{8}/g;

/** The fenced blocks of a markdown text, with their info strings. */
const blocks = (md: string): { info: string; lines: string[] }[] =>
  [...md.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ info: m[1]!, lines: m[2]!.replace(/\n$/, "").split("\n") }));



/** `cloudmill run` in this process: the reference results. */
const cloudmillRun = async (args: readonly string[]): Promise<unknown> => {
  let stdout = "";
  const io: CliIO = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: () => true }, env: {} };
  expect(await runCli(["run", ...args, "--workers", "0", "--no-progress"], io)).toBe(0);
  return JSON.parse(stdout);
};

let cloud: DevCloud;
let cwd: string;

beforeAll(async () => {
  cloud = await startDevCloud({ port: 0, workers: 2, chunkSize: 64 * 1024, log: silentLogger });
  // A user's directory: the examples beside them, a file written by --out lands here.
  cwd = await mkdtemp(path.join(os.tmpdir(), "cloudmill-readme-"));
  await symlink(path.join(ROOT, "examples"), path.join(cwd, "examples"));
}, 60_000);

afterAll(async () => {
  await cloud?.stop();
  await rm(cwd, { recursive: true, force: true });
}, 60_000);

describe("the README's SDK section against cloudmill dev", () => {
  it("the three-line example prints what the README shows", async () => {
    const [example, shown] = blocks(README);
    expect(example!.info).toBe("ts");
    expect(example!.lines.slice(0, 3).every((l) => !l.startsWith("//"))).toBe(true);
    const code = example!.lines.join("\n").replace("http://127.0.0.1:4566", cloud.endpoint);
    // Inside the package, so `import … from "cloudmill"` resolves to the package itself (dist/).
    const file = path.join(ROOT, "dist", `.readme-example-${randomBytes(4).toString("hex")}.mjs`);
    await writeFile(file, code);
    try {
      const r = await runProcess(process.execPath, [file], { cwd: ROOT, env: childEnv() });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual(JSON.parse(shown!.lines.join("")));
    } finally {
      await rm(file, { force: true });
    }
    expect(JSON.parse(shown!.lines.join(""))).toEqual([
      await cloudmillRun(["examples/words.txt", "--op", "wordcount", "-p", "k=3"]),
      await cloudmillRun(["examples/events.jsonl", "--op", "wordcount", "-p", "k=3"]),
    ]);
  }, 60_000);

  it("the CLI session runs as shown: submit --wait, submit, status, wait, result, jobs, cancel", async () => {
    const session = blocks(README).find((b) => b.info === "console" && b.lines.some((l) => l.includes("cloudmill dev")))!;
    expect(session).toBeDefined();
    const env = childEnv({ CLOUDMILL_ENDPOINT: cloud.endpoint });
    let lastJob = "";
    const submitted: string[] = [];
    const steps: string[] = [];
    for (const [i, line] of session.lines.entries()) {
      if (!line.startsWith("$ ")) continue;
      const argv = shellWords(line.slice(2));
      if (argv[0] === "export") {
        expect(argv[1]).toBe("CLOUDMILL_ENDPOINT=http://127.0.0.1:4566");
        continue;
      }
      expect(argv.slice(0, 2)).toEqual(["npx", "cloudmill"]);
      if (argv[2] === "dev") continue; // the test's own dev cloud stands in for it
      const args = argv.slice(2).map((a) => a.replace(JOB_ID, lastJob));
      const shown = session.lines.slice(i + 1, session.lines.findIndex((l, j) => j > i && l.startsWith("$ ")) >>> 0);
      const r = await runProcess(process.execPath, [BIN, ...args], { cwd, env });
      expect(r.code, `${line}\n${r.stderr}`).toBe(0);
      const command = args[0]!;
      steps.push(command);
      switch (command) {
        case "submit":
          if (args.includes("--wait")) {
            const json = shown.slice(shown.findIndex((l) => l.startsWith("{")));
            expect(JSON.parse(r.stdout)).toEqual(JSON.parse(json.join("\n")));
            expect(r.stderr).toMatch(/^uploading examples\/words\.txt → s3:\/\/cloudmill-input\/_uploads\/job-\S+\/words\.txt/);
            expect(r.stderr).toMatch(/\[#+\] 5\/5 chunks {2}100% {2}succeeded/);
          } else {
            expect(r.stdout).toMatch(/^job-\d{8}T\d{6}-[0-9a-f]{8}\n$/);
            lastJob = r.stdout.trim();
            submitted.push(lastJob);
          }
          break;
        case "status":
          expect(r.stdout).toMatch(new RegExp(`^${lastJob} {2}(running|succeeded) {2}\\d/5 chunks \\(\\d+%\\) {2}stats {2}started `));
          break;
        case "wait":
          expect(JSON.parse(r.stdout)).toEqual(JSON.parse(shown.slice(shown.findIndex((l) => l.startsWith("{"))).join("\n")));
          expect(r.stderr).toContain(`${lastJob} [##############################] 5/5 chunks  100%  succeeded`);
          break;
        case "result":
          expect(r.stdout).toBe("");
          expect(JSON.parse(await readFile(path.join(cwd, "stats.json"), "utf8"))).toEqual(await cloudmillRun(["examples/numbers.txt", "--op", "stats"]));
          break;
        case "jobs":
          expect(r.stdout.split("\n")[0]).toBe(shown[0]);
          expect(r.stdout).toMatch(new RegExp(`\\n${submitted[0]}  succeeded  5/5 +stats `));
          expect(r.stdout).toMatch(/ succeeded {2}5\/5 +wordcount .*words\.txt\n/);
          break;
        case "cancel":
          expect(r.stdout).toMatch(new RegExp(`^job ${lastJob} (cancelled \\(\\d+ of 130 chunks were done\\)|had already succeeded; nothing to cancel)\\n$`));
          break;
        default:
          throw new Error(`the README's session runs a command this test does not check: ${line}`);
      }
    }
    expect(steps).toEqual(["submit", "submit", "status", "wait", "result", "jobs", "submit", "cancel"]);
  }, 120_000);

  it("examples/sdk.ts runs against cloudmill dev", async () => {
    const r = await runProcess(path.join(ROOT, "node_modules/.bin/tsx"), ["examples/sdk.ts", "--endpoint", cloud.endpoint], { cwd: ROOT, env: childEnv() });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toBe('most frequent words: [["the",1816],["was",1636],["of",1562]] | words in the events: 18000');
    expect(lines.slice(1, 4).map((l) => l.replace(JOB_ID, "ID")).sort()).toEqual(
      [
        `ID ended: ${JSON.stringify(await cloudmillRun(["examples/numbers.txt", "--op", "stats"]))}`,
        `ID ended: ${JSON.stringify(await cloudmillRun(["examples/events.jsonl", "--op", "grep", "-p", 'pattern="ok": false', "-p", "k=1"]))}`,
        `ID ended: ${JSON.stringify(await cloudmillRun(["examples/events.jsonl", "--op", "count", "--format", "lines"]))}`,
      ].sort(),
    );
    expect(lines[4]).toMatch(/^progress: \{ state: '(pending|running)'/);
    expect(lines[5]).toMatch(/^not done after 1 s; cancelling: (cancelled|succeeded)$/);
  }, 120_000);
});
