/**
 * infra/app.ts as `npx cdk synth` runs it: the CLI passes the context (cdk.json + `-c`) in
 * CDK_CONTEXT_JSON and the output directory in CDK_OUTDIR. Run in-process, with no AWS credentials
 * or region in the environment. (`npx cdk synth` itself is exercised by hand: see README.md.)
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { oneLaneOutputs } from "../../lib/core/stack.js";
import { cdkJsonContext } from "./synth.js";

const runApp = async (context: Record<string, unknown>): Promise<string> => {
  const outdir = mkdtempSync(path.join(tmpdir(), "cloudmill-synth-"));
  vi.stubEnv("CDK_OUTDIR", outdir);
  // CloudFormation schema validation (~10 s) is left to `npx cdk synth`; bundling is exercised in functions.test.ts.
  vi.stubEnv("CDK_VALIDATION", "false");
  vi.stubEnv("CDK_CONTEXT_JSON", JSON.stringify({ ...cdkJsonContext(), ...context, "aws:cdk:bundling-stacks": [] }));
  vi.resetModules();
  await import("../../infra/app.js");
  return outdir;
};

describe("infra/app.ts (what `npx cdk synth` runs)", () => {
  beforeEach(() => {
    for (const name of Object.keys(process.env).filter((k) => k.startsWith("AWS_"))) vi.stubEnv(name, undefined);
  });
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  it("synthesizes Cloudmill-<lab> with no credentials, the AwsSolutions checks passing", async () => {
    const outdir = await runApp({ lab: "genomics", alertEmail: "pi@lab.example.org" });
    const template = JSON.parse(readFileSync(path.join(outdir, "Cloudmill-genomics.template.json"), "utf8")) as {
      Outputs: Record<string, unknown>;
    };
    expect(Object.keys(template.Outputs).sort()).toEqual(oneLaneOutputs().sort());
    const report = JSON.parse(readFileSync(path.join(outdir, "validation-report.json"), "utf8")) as {
      pluginReports: { violations?: unknown[] }[];
    };
    expect(report.pluginReports.flatMap((r) => r.violations ?? [])).toEqual([]);
  });

  it("refuses a bad combination with one line on stderr and exit code 1", async () => {
    const exited = new Error("exited");
    const exit = vi.spyOn(process, "exit").mockImplementation(() => {
      throw exited;
    });
    const error = vi.spyOn(console, "error").mockImplementation(() => undefined);
    await expect(runApp({ lab: "genomics" })).rejects.toBe(exited);
    expect(exit).toHaveBeenCalledWith(1);
    expect(error.mock.calls).toEqual([
      [
        'cloudmill: context "alertEmail" is required with a budget (budgetLimitUsd=100): pass -c alertEmail=<address>, or -c budgetLimitUsd=0 for no budget',
      ],
    ]);
  });
});
