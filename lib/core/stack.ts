/** The deployed stack's contract with the SDK and CLI: its name per lab, and the outputs they read by key. */

/** CloudFormation output keys of a `Cloudmill-<lab>` stack (infra declares them, `Cloudmill.connect` reads them). */
export const STACK_OUTPUTS = {
  inputBucket: "InputBucketName",
  outputBucket: "OutputBucketName",
  taskQueueUrl: "TaskQueueUrl",
  deadLetterQueueUrl: "DeadLetterQueueUrl",
  cluster: "ClusterName",
  service: "ServiceName",
} as const;

export type StackOutputField = keyof typeof STACK_OUTPUTS;

/** The stack name of a lab, as `npx cdk deploy -c lab=<name>` names it. */
export const stackNameOf = (lab: string): string => `Cloudmill-${lab}`;
