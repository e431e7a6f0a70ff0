/**
 * Synthesizes the lab stack the way `npx cdk synth` does (cdk.json context, then `-c` overrides),
 * offline. Synth bundles three functions with esbuild, so each test file synthesizes once.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { App } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { CloudmillStack } from "../../infra/CloudmillStack.js";
import { readCloudmillContext } from "../../infra/context.js";
import type { CloudmillPipelineProps } from "../../infra/props.js";

/** This repository (cdk.json, test fixtures). */
export const REPO_ROOT = path.resolve(import.meta.dirname, "../..");

/** The context cdk.json gives every synth (defaults and feature flags). */
export const cdkJsonContext = (): Record<string, unknown> =>
  (JSON.parse(readFileSync(path.join(REPO_ROOT, "cdk.json"), "utf8")) as { context: Record<string, unknown> }).context;

/** A named lab with an alert email: what a real deploy looks like (`-c lab=genomics -c alertEmail=...`). */
export const LAB_CONTEXT = { lab: "genomics", alertEmail: "pi@lab.example.org" } as const;

/**
 * A lab asking for everything optional, with values as strings, as `-c key=value` passes them:
 * spot over two types, extra input bucket, account-wide budget, other retention and attempts.
 */
export const SPOT_CONTEXT = {
  lab: "spotty",
  alertEmail: "ops@lab.example.org",
  spot: "true",
  instanceTypes: "m7g.large,c7g.xlarge",
  maxInstances: "3",
  maxAttempts: "5",
  chunkSize: "64MiB",
  budgetLimitUsd: "250",
  budgetScope: "account",
  workRetentionDays: "3",
  logRetentionDays: "14",
  extraInputBuckets: "shared-datasets",
  outputRemoval: "destroy",
  logLevel: "DEBUG",
} as const;

/** A lab whose jobs choose: on-demand workers by default, spot ones for jobs that prefer `cheapest`. */
export const PER_JOB_CONTEXT = { lab: "thrifty", alertEmail: "ops@lab.example.org", spot: "per-job" } as const;

export interface Synthesized {
  readonly app: App;
  readonly stack: CloudmillStack;
  readonly template: Template;
}

export interface SynthOptions {
  /** Bundle the functions with esbuild (a few seconds); otherwise CDK skips bundling, as `cdk deploy --exclusively` does for other stacks. */
  readonly bundle?: boolean;
  /** Run CDK's built-in CloudFormation schema validation (~10 s); test/infra/nag.test.ts does. */
  readonly cloudFormationValidation?: boolean;
}

/** Builds (but does not synthesize) the app for `-c` overrides on top of cdk.json. */
export const buildApp = (
  overrides: Record<string, string> = {},
  props: Partial<CloudmillPipelineProps> = {},
  options: SynthOptions = {},
): { app: App; stack: CloudmillStack } => {
  const app = new App({
    context: { ...cdkJsonContext(), ...overrides, ...(options.bundle ? {} : { "aws:cdk:bundling-stacks": [] }) },
    builtinCloudFormationValidation: options.cloudFormationValidation ?? false,
  });
  const context = readCloudmillContext((key) => app.node.tryGetContext(key));
  const stack = new CloudmillStack(app, context.stackName, { pipeline: { ...context.props, ...props }, notices: context.warnings });
  return { app, stack };
};

const cache = new Map<string, Synthesized>();

/** Synthesizes once per distinct input in this test file's process; later calls share the result. */
export const synth = (
  overrides: Record<string, string> = {},
  props: Partial<CloudmillPipelineProps> = {},
  options: SynthOptions = {},
): Synthesized => {
  const key = JSON.stringify([overrides, props, options]);
  let hit = cache.get(key);
  if (hit === undefined) {
    const { app, stack } = buildApp(overrides, props, options);
    hit = { app, stack, template: Template.fromStack(stack) };
    cache.set(key, hit);
  }
  return hit;
};

type Resource = {
  Type: string;
  Properties?: Record<string, unknown>;
  DependsOn?: string[];
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
};

/** The one resource of `type` whose logical id starts with `prefix`. */
export const resource = (template: Template, type: string, prefix: string): { id: string; resource: Resource } => {
  const found = Object.entries(template.findResources(type) as Record<string, Resource>).filter(([id]) => id.startsWith(prefix));
  if (found.length !== 1)
    throw new Error(`expected one ${type} starting with ${prefix}, found ${found.map(([id]) => id).join(", ") || "none"}`);
  return { id: found[0]![0], resource: found[0]![1] };
};

export interface Statement {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: unknown;
}

/** Statements of the default policy attached to the role whose logical id starts with `rolePrefix`. */
export const statementsOf = (template: Template, rolePrefix: string): Statement[] => {
  const role = resource(template, "AWS::IAM::Role", rolePrefix).id;
  return Object.values(template.findResources("AWS::IAM::Policy") as Record<string, Resource>)
    .filter((p) => ((p.Properties?.["Roles"] ?? []) as { Ref: string }[]).some((r) => r.Ref === role))
    .flatMap((p) => (p.Properties?.["PolicyDocument"] as { Statement: Statement[] } | undefined)?.Statement ?? []);
};

export const actionsOf = (s: Statement): string[] => (Array.isArray(s.Action) ? s.Action : [s.Action]);
export const resourcesOf = (s: Statement): unknown[] => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]);

/** `{Fn::Join: ["", [{Fn::GetAtt: [Bucket, Arn]}, "/_work/*"]]}` → `<Bucket>/_work/*`, `{Fn::GetAtt:[Q,Arn]}` → `<Q>`. */
export const flat = (value: unknown): string => {
  if (typeof value === "string") return value;
  const v = value as Record<string, unknown>;
  if (v["Fn::Join"]) {
    const [sep, parts] = v["Fn::Join"] as [string, unknown[]];
    return parts.map(flat).join(sep);
  }
  if (v["Fn::GetAtt"]) return `<${(v["Fn::GetAtt"] as string[])[0]}>`;
  if (v["Ref"]) return `<${v["Ref"] as string}>`;
  if (v["Fn::Sub"]) return String(v["Fn::Sub"]);
  return JSON.stringify(value);
};

/** `{ action: [resources] }` of a role's Allow statements, with resources flattened and sorted. */
export const grantsOf = (template: Template, rolePrefix: string): Record<string, string[]> => {
  const grants: Record<string, string[]> = {};
  for (const s of statementsOf(template, rolePrefix)) {
    if (s.Effect !== "Allow") continue;
    for (const a of actionsOf(s)) grants[a] = [...(grants[a] ?? []), ...resourcesOf(s).map(flat)].sort();
  }
  return grants;
};
