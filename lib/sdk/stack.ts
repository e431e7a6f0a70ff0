/** A lab's stack, read once: its CloudFormation outputs name the buckets, the queue and the fleet. */
import { type CloudFormationClient, DescribeStacksCommand } from "@aws-sdk/client-cloudformation";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import { withAws } from "./awsErrors.js";
import { STACK_OUTPUTS, type StackOutputField } from "../core/stack.js";

export type StackOutputs = { readonly [K in StackOutputField]?: string };

/** Stack states in which the outputs can be trusted. */
const USABLE =
  /^(CREATE_COMPLETE|UPDATE_COMPLETE|UPDATE_ROLLBACK_COMPLETE|UPDATE_IN_PROGRESS|UPDATE_COMPLETE_CLEANUP_IN_PROGRESS|IMPORT_COMPLETE)$/;

export const readStackOutputs = async (
  cfn: CloudFormationClient,
  stack: string,
  where: { endpoint?: string; region?: string } = {},
): Promise<StackOutputs> => {
  const res = await withAws({ action: `read stack ${stack}`, stack, ...where }, () =>
    cfn.send(new DescribeStacksCommand({ StackName: stack })),
  );
  const found = res.Stacks?.[0];
  if (!found)
    throw new CloudmillError(
      ErrorCode.ENVIRONMENT,
      `no stack ${stack}: deploy it with \`npx cdk deploy\`, or check the stack name and AWS_REGION`,
    );
  const status = found.StackStatus ?? "";
  if (!USABLE.test(status)) {
    throw new CloudmillError(
      ErrorCode.ENVIRONMENT,
      `stack ${stack} is ${status}: wait for its deployment to finish (or fix it with \`npx cdk deploy\`)`,
    );
  }
  const byKey = new Map((found.Outputs ?? []).map((o) => [o.OutputKey, o.OutputValue]));
  const out: Record<string, string> = {};
  for (const [field, key] of Object.entries(STACK_OUTPUTS)) {
    const v = byKey.get(key);
    if (v) out[field] = v;
  }
  return out as StackOutputs;
};
