/** The deployed stack's contract with the SDK and CLI: its name per lab, and the outputs they read by key. */

/** CloudFormation output keys of a `Cloudmill-<lab>` stack (infra declares them, `Cloudmill.connect` reads them). */
export const STACK_OUTPUTS = {
  inputBucket: "InputBucketName",
  outputBucket: "OutputBucketName",
  taskQueueUrl: "TaskQueueUrl",
  deadLetterQueueUrl: "DeadLetterQueueUrl",
  cluster: "ClusterName",
  service: "ServiceName",
  /** Only a stack with `spot: "per-job"`: the spot lane's service and task queue. */
  spotService: "SpotServiceName",
  spotTaskQueueUrl: "SpotTaskQueueUrl",
} as const;

export type StackOutputField = keyof typeof STACK_OUTPUTS;

/** The outputs only a stack with a spot lane has; every stack has the others. */
export const SPOT_LANE_OUTPUTS: readonly StackOutputField[] = ["spotService", "spotTaskQueueUrl"];

/** The output keys a stack of one lane declares. */
export const oneLaneOutputs = (): string[] =>
  Object.entries(STACK_OUTPUTS)
    .filter(([field]) => !SPOT_LANE_OUTPUTS.includes(field as StackOutputField))
    .map(([, key]) => key);

/** The stack name of a lab, as `npx cdk deploy -c lab=<name>` names it. */
export const stackNameOf = (lab: string): string => `Cloudmill-${lab}`;
