/**
 * cdk-nag v3 (AwsSolutions pack) as CDK synthesis runs it: registered with
 * `Validations.of(app).addPlugins(...)`, acknowledgements through `Validations.of(x).acknowledge(...)`.
 * Zero unacknowledged findings, no stale acknowledgement, and every acknowledgement explains itself.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { Validations, type App, type PolicyValidationPluginReport } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import type { IConstruct } from "constructs";
import { beforeAll, describe, expect, it } from "vitest";
import { LAB_CONTEXT, PER_JOB_CONTEXT, SPOT_CONTEXT, buildApp } from "./synth.js";

interface Acknowledgement {
  readonly path: string;
  readonly id: string;
  readonly reason: string;
}

/** Every AwsSolutions acknowledgement in the construct tree (CDK records a few of its own for its CloudFormation validator). */
const acknowledgements = (root: IConstruct): Acknowledgement[] =>
  root.node
    .findAll()
    .flatMap((c) =>
      c.node.metadata
        .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
        .flatMap((m) =>
          Object.entries(m.data as Record<string, string>).map(([id, reason]) => ({
            path: c.node.path,
            id: id.replace(/^annotation::/i, ""),
            reason,
          })),
        ),
    )
    .filter((a) => a.id.startsWith("AwsSolutions-"));

/** Findings as if nothing were acknowledged (cdk-nag's private check, switched off for this one pack instance). */
const rawFindings = (app: App): PolicyValidationPluginReport => {
  const pack = new AwsSolutionsChecks(app);
  (pack as unknown as { isAcknowledged: () => boolean }).isAcknowledged = () => false;
  return pack.validateScope(app);
};

/** `<PipelineInputBucketBFFE5A87.Arn>` → `<PipelineInputBucket.Arn>`: logical-id hashes out of the reviewed list. */
const unhash = (id: string): string => id.replace(/([A-Za-z]+)[0-9A-F]{8}(?=[.>])/g, "$1");

describe.each([
  ["a named lab", LAB_CONTEXT],
  ["a spot lab with every option", SPOT_CONTEXT],
  ["a lab whose jobs choose spot or on demand", PER_JOB_CONTEXT],
])("cdk-nag AwsSolutions on %s", (_name, context) => {
  let app: App;
  let pack: AwsSolutionsChecks;
  let assemblyDir: string;
  beforeAll(() => {
    ({ app } = buildApp(context));
    pack = new AwsSolutionsChecks(app);
    Validations.of(app).addPlugins(pack);
    // In a test, CDK throws from synth on any unacknowledged error-level finding.
    assemblyDir = app.synth().directory;
  });

  it("has zero unacknowledged findings, warnings included", () => {
    const report = pack.validateScope(app);
    expect(report.violations.map((v) => `${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(", ")}`)).toEqual([]);
    expect(report.success).toBe(true);
  });

  it("passes CDK's validation during synth: the report has no violation", () => {
    const report = JSON.parse(readFileSync(path.join(assemblyDir, "validation-report.json"), "utf8")) as {
      pluginReports: { violations?: unknown[] }[];
    };
    expect(report.pluginReports.flatMap((r) => r.violations ?? [])).toEqual([]);
  });

  it("acknowledges only findings that exist, each on the resource (or an ancestor) it concerns", () => {
    const raw = rawFindings(app).violations.flatMap((v) =>
      v.violatingResources.map((r) => ({ id: v.ruleName, path: r.constructPath ?? "" })),
    );
    expect(raw.length).toBeGreaterThan(0);
    const acks = acknowledgements(app);
    for (const f of raw)
      expect(
        acks.some((a) => a.id === f.id && (f.path === a.path || f.path.startsWith(`${a.path}/`))),
        `${f.id} at ${f.path}`,
      ).toBe(true);
    for (const a of acks)
      expect(
        raw.some((f) => f.id === a.id && (f.path === a.path || f.path.startsWith(`${a.path}/`))),
        `stale: ${a.id} at ${a.path}`,
      ).toBe(true);
  });

  it("gives every acknowledgement a specific reason", () => {
    for (const a of acknowledgements(app)) {
      expect(a.reason.length, `${a.id} at ${a.path}`).toBeGreaterThan(80);
      expect(a.reason).not.toMatch(/^(n\/a|ok|todo|suppress(ed)?|not needed)\.?$/i);
    }
  });
});

describe("the reviewed list of acknowledged findings (a named lab)", () => {
  it("is exactly this, so any new acknowledgement shows up in review", () => {
    const { app } = buildApp(LAB_CONTEXT);
    const ids = [...new Set(acknowledgements(app).map((a) => `${unhash(a.id)} @ ${a.path.replace(/^Cloudmill-genomics\//, "")}`))].sort();
    expect(ids).toEqual(
      [
        "AwsSolutions-AS3 @ Pipeline/Workers/AutoScalingGroup",
        "AwsSolutions-ECS2 @ Pipeline/Workers/WorkerTask",
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole] @ AWS679f53fac002430cb0da5b7982bd2287/ServiceRole",
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole] @ BucketNotificationsHandler050a0587b7544547bf325f094a3db834/Role",
        "AwsSolutions-IAM5[Action::ecs:Submit*] @ Pipeline/Workers/InstanceRole/DefaultPolicy",
        "AwsSolutions-IAM5[Resource::*] @ Pipeline/Workers/InstanceRole/DefaultPolicy",
        "AwsSolutions-IAM5[Resource::*] @ Pipeline/Workers/WorkerTask/ExecutionRole/DefaultPolicy",
        "AwsSolutions-IAM5[Resource::<PipelineInputBucket.Arn>/*] @ Pipeline/SplitterRole",
        "AwsSolutions-IAM5[Resource::<PipelineInputBucket.Arn>/*] @ Pipeline/Workers/TaskRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/*/result.json] @ Pipeline/ReducerRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/*/result.json] @ Pipeline/SplitterRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/*/status.json] @ Pipeline/DeadLettersRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/*/status.json] @ Pipeline/ReducerRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/*/status.json] @ Pipeline/SplitterRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/*/status.json] @ Pipeline/Workers/TaskRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_fleet/*] @ Pipeline/Workers/TaskRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_jobs/*/files/*] @ Pipeline/Workers/TaskRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_jobs/*/part-*] @ Pipeline/Workers/TaskRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_jobs/*/results/*] @ Pipeline/Workers/TaskRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_jobs/*] @ Pipeline/ReducerRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_jobs/*] @ Pipeline/SplitterRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_work/*/cancelled.json] @ Pipeline/SplitterRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_work/*/failure.json] @ Pipeline/DeadLettersRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_work/*/failure.json] @ Pipeline/ReducerRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_work/*/failure.json] @ Pipeline/SplitterRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_work/*/failure.json] @ Pipeline/Workers/TaskRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_work/*/parts/*.part.json] @ Pipeline/SplitterRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_work/*/spill/*] @ Pipeline/Workers/TaskRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_work/*] @ Pipeline/DeadLettersRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_work/*] @ Pipeline/ReducerRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_work/*] @ Pipeline/SplitterRole",
        "AwsSolutions-IAM5[Resource::<PipelineOutputBucket.Arn>/_work/*] @ Pipeline/Workers/TaskRole",
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/<PipelineWorkersCluster>/*] @ Pipeline/Workers/TaskRole/DefaultPolicy",
        "AwsSolutions-L1 @ Pipeline/DeadLetters",
        "AwsSolutions-L1 @ Pipeline/Reducer",
        "AwsSolutions-L1 @ Pipeline/Splitter",
      ].sort(),
    );
  });
});
