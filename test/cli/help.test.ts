/**
 * `--help` shows each default as a user types it (`(default: 4566)`), never as commander's JSON
 * of a string (`(default: "4566")`), in every command.
 */
import { describe, expect, it } from "vitest";
import { cli } from "../helpers/cli.js";

/** A command's help with its wrapped lines joined, so a default split over two lines reads as one. */
const help = async (command: string): Promise<string> => {
  const r = await cli([command, "--help"]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.replace(/\s+/g, " ");
};

const COMMANDS = ["run", "dev", "submit", "status", "wait", "result", "report", "estimate", "jobs", "cancel", "retry", "fleet", "ops"];

describe("defaults in --help", () => {
  it.each(COMMANDS)("cloudmill %s --help quotes no default", async (command) => {
    expect(await help(command)).not.toMatch(/\(default: "/);
  });

  it.each([
    ["run", "--max-attempts <n> tries per chunk before the job fails (default: 3)"],
    ["dev", "--port <port> port of the S3/SQS endpoint (default: 4566)"],
    ["dev", "(0: none) (default: 64MiB)"],
    ["dev", "chunk size for uploads (default: 16MiB)"],
    ["estimate", "worker tasks to estimate the wall time at (default: 1)"],
    ["estimate", "(the stack's maxWorkers) (default: 4)"],
  ])("cloudmill %s --help says %j", async (command, text) => {
    expect(await help(command)).toContain(text);
  });
});
