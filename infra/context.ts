/**
 * CDK context (cdk.json defaults, overridden by `-c key=value`) → `CloudmillPipeline` props.
 * Values from `-c` arrive as strings, values from cdk.json as JSON; both are accepted.
 * A bad value is refused with one line naming the key, what was expected, and what was given.
 */
import { existsSync } from "node:fs";
import * as path from "node:path";
import { RemovalPolicy } from "aws-cdk-lib";
import { RetentionDays } from "aws-cdk-lib/aws-logs";
import { z } from "zod";
import { ChunkSize } from "../lib/core/job/spec.js";
import { parseSize } from "../lib/core/job/size.js";
import { stackNameOf } from "../lib/core/stack.js";
import { BUDGET_SCOPES, CloudmillConfigError, LAB_NAME_PATTERN, LOG_LEVELS, type CloudmillPipelineProps } from "./props.js";

/** The lab cdk.json names, synthesized when no `-c lab=<name>` is given: a preview, not meant for deploying. */
export const DEFAULT_LAB = "default";

const RETENTION_DAYS = Object.values(RetentionDays).filter((v): v is RetentionDays => typeof v === "number" && v > 0);

const bool = z.union([z.boolean(), z.enum(["true", "false"]).transform((v) => v === "true")]);
const whole = z
  .union([
    z.number(),
    z
      .string()
      .regex(/^\s*\d+\s*$/)
      .transform(Number),
  ])
  .pipe(z.number().int().nonnegative());
const amount = z
  .union([
    z.number(),
    z
      .string()
      .regex(/^\s*\d+(?:\.\d+)?\s*$/)
      .transform(Number),
  ])
  .pipe(z.number().nonnegative());
/** A byte count: a whole number or a size (`64MiB`); 0 allowed. */
const bytes = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const n = typeof v === "number" ? v : v.trim() === "0" ? 0 : parseSize(v);
  if (n === undefined || !Number.isInteger(n) || n < 0) {
    ctx.addIssue({ code: "custom", message: "not a size" });
    return z.NEVER;
  }
  return n;
});
/** A list from cdk.json (`["a","b"]`) or from `-c` (`a,b` or `["a","b"]`). */
const list = z.union([
  z.array(z.string()),
  z.string().transform((s, ctx) => {
    const t = s.trim();
    if (!t.startsWith("["))
      return t
        .split(",")
        .map((x) => x.trim())
        .filter((x) => x !== "");
    try {
      return z.array(z.string()).parse(JSON.parse(t));
    } catch {
      ctx.addIssue({ code: "custom", message: "not a JSON list of strings" });
      return z.NEVER;
    }
  }),
]);
const removal = z.enum(["retain", "destroy"]);
const optionalText = z.string().transform((s) => (s.trim() === "" ? undefined : s.trim()));

/** Each context key, what it accepts, and how a refusal describes it. */
const KEYS = {
  lab: {
    schema: z.string().regex(LAB_NAME_PATTERN),
    expected: "1 to 32 lowercase letters, digits or '-', starting and ending with a letter or digit",
  },
  instanceTypes: { schema: list, expected: "a list of instance types, e.g. m7g.large,c7g.large" },
  spot: { schema: z.union([bool, z.literal("per-job")]), expected: "true, false or per-job" },
  maxInstances: { schema: whole, expected: "a whole number" },
  maxWorkers: { schema: whole, expected: "a whole number" },
  warmPool: { schema: whole, expected: "a whole number of instances (0 for none)" },
  inlineMaxBytes: { schema: bytes, expected: "a size, e.g. 64MiB (0 to map no job in the splitter)" },
  workerVcpus: { schema: whole, expected: "a whole number" },
  workerMemoryMiB: { schema: whole, expected: "a whole number of MiB" },
  workerDiskGiB: { schema: whole, expected: "a whole number of GiB (at least 30)" },
  chunkSize: { schema: ChunkSize, expected: "a size from 1 byte to 1GiB, e.g. 16MiB" },
  maxAttempts: { schema: whole, expected: "a whole number" },
  budgetLimitUsd: { schema: amount, expected: "an amount of USD (0 for no budget)" },
  budgetScope: { schema: z.enum(BUDGET_SCOPES), expected: `one of ${BUDGET_SCOPES.join(", ")}` },
  alertEmail: { schema: optionalText, expected: "an email address" },
  workRetentionDays: { schema: whole, expected: "a whole number of days" },
  logRetentionDays: {
    schema: whole.pipe(z.number().refine((n) => RETENTION_DAYS.includes(n))),
    expected: `one of CloudWatch Logs' retention periods (${RETENTION_DAYS.join(", ")})`,
  },
  inputRemoval: { schema: removal, expected: "retain or destroy" },
  outputRemoval: { schema: removal, expected: "retain or destroy" },
  extraInputBuckets: { schema: list, expected: "a list of bucket names" },
  extraInputBucketOwners: { schema: list, expected: "a list of 12-digit AWS account ids" },
  logLevel: { schema: z.enum(LOG_LEVELS), expected: `one of ${LOG_LEVELS.join(", ")}` },
  ops: { schema: list, expected: "a list of op module paths, e.g. ./ops/index.ts,./ops/more.ts" },
  workerDockerfile: { schema: optionalText, expected: "the path of a Dockerfile stage starting FROM cloudmill-worker" },
} as const;

export type ContextKey = keyof typeof KEYS;
export const CONTEXT_KEYS = Object.keys(KEYS) as ContextKey[];
type Parsed = { [K in ContextKey]?: z.output<(typeof KEYS)[K]["schema"]> };

export interface CloudmillContext {
  readonly lab: string;
  readonly stackName: string;
  /** True for the default lab: the template is a preview (`cdk synth` on a fresh clone). */
  readonly preview: boolean;
  readonly props: CloudmillPipelineProps;
  /** Things worth saying at synth time; the stack reports them as warnings. */
  readonly warnings: readonly string[];
}

const parseKey = <K extends ContextKey>(key: K, raw: unknown): Parsed[K] => {
  const result = KEYS[key].schema.safeParse(raw);
  if (!result.success) throw new CloudmillConfigError(`context "${key}" must be ${KEYS[key].expected}, got ${JSON.stringify(raw)}`);
  return result.data as Parsed[K];
};

const removalPolicy = (v: "retain" | "destroy" | undefined): RemovalPolicy | undefined =>
  v === undefined ? undefined : v === "retain" ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;

/**
 * Reads every cloudmill context key through `get` (e.g. `k => app.node.tryGetContext(k)`).
 * Unset keys take the construct's defaults. A budget needs an alert email, except in the preview
 * a fresh clone synthesizes (no lab named), which then has no budget and says so.
 */
export const readCloudmillContext = (get: (key: string) => unknown): CloudmillContext => {
  const c: Parsed = {};
  for (const key of CONTEXT_KEYS) {
    const raw = get(key);
    if (raw !== undefined && raw !== null) (c as Record<string, unknown>)[key] = parseKey(key, raw);
  }
  const lab = c.lab ?? DEFAULT_LAB;
  const preview = lab === DEFAULT_LAB;
  const warnings: string[] = [];
  let budgetLimitUsd = c.budgetLimitUsd === 0 ? undefined : c.budgetLimitUsd;
  if (budgetLimitUsd !== undefined && c.alertEmail === undefined) {
    if (!preview) {
      throw new CloudmillConfigError(
        `context "alertEmail" is required with a budget (budgetLimitUsd=${budgetLimitUsd}): pass -c alertEmail=<address>, or -c ` +
          `budgetLimitUsd=0 for no budget`,
      );
    }
    warnings.push(
      `preview of lab "${DEFAULT_LAB}" without alertEmail: no budget is created; deploy with -c lab=<name> -c alertEmail=<address>`,
    );
    budgetLimitUsd = undefined;
  }
  if (preview) warnings.push(`lab "${DEFAULT_LAB}" is a preview of the template; deploy with -c lab=<name>`);
  // Paths are relative to where the app runs (the directory of cdk.json).
  for (const [key, files] of [
    ["ops", c.ops ?? []],
    ["workerDockerfile", c.workerDockerfile === undefined ? [] : [c.workerDockerfile]],
  ] as const) {
    for (const file of files) {
      if (!existsSync(path.resolve(file)))
        throw new CloudmillConfigError(`context "${key}": no file at ${JSON.stringify(file)} (resolved to ${path.resolve(file)})`);
    }
  }

  const props: CloudmillPipelineProps = {
    labName: lab,
    instanceTypes: c.instanceTypes,
    spot: c.spot,
    maxInstances: c.maxInstances,
    maxWorkers: c.maxWorkers,
    warmPool: c.warmPool,
    inlineMaxBytes: c.inlineMaxBytes,
    workerVcpus: c.workerVcpus,
    workerMemoryMiB: c.workerMemoryMiB,
    workerDiskGiB: c.workerDiskGiB,
    defaultChunkSize: c.chunkSize,
    maxAttempts: c.maxAttempts,
    budgetLimitUsd,
    budgetScope: budgetLimitUsd === undefined ? undefined : c.budgetScope,
    alertEmail: c.alertEmail,
    workRetentionDays: c.workRetentionDays,
    logRetention: c.logRetentionDays as RetentionDays | undefined,
    inputRemovalPolicy: removalPolicy(c.inputRemoval),
    outputRemovalPolicy: removalPolicy(c.outputRemoval),
    extraInputBuckets: c.extraInputBuckets,
    extraInputBucketOwners: c.extraInputBucketOwners,
    logLevel: c.logLevel,
    ops: c.ops,
    workerDockerfile: c.workerDockerfile,
  };
  return { lab, stackName: stackNameOf(lab), preview, props, warnings };
};
