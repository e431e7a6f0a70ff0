/**
 * cdk-nag acknowledgements (cdk-nag v3 reads CDK's native `Validations.of(x).acknowledge`).
 * Every acknowledgement names one finding and says why it is acceptable here; a test lists them all.
 */
import { Stack, Validations } from "aws-cdk-lib";
import type { IConstruct } from "constructs";

/** Acknowledge one cdk-nag finding (e.g. `AwsSolutions-SQS3` or `AwsSolutions-IAM5[Action::s3:*]`) on `scope`. */
export const acknowledge = (scope: IConstruct, id: string, reason: string): void => {
  Validations.of(scope).acknowledge({ id, reason });
};

type Cfn = string | number | boolean | null | undefined | Cfn[] | { [key: string]: Cfn };

/** cdk-nag's flattening of a CloudFormation value: `{Fn::GetAtt:[X,Arn]}` → `<X.Arn>`, `{Ref:X}` → `<X>`. */
const flatten = (node: Cfn): string => {
  if (node === undefined) return "";
  if (typeof node === "string") return node.replace(/\$\{/g, "<").replace(/\}/g, ">");
  if (node !== null && typeof node === "object" && !Array.isArray(node)) {
    const join = node["Fn::Join"];
    if (Array.isArray(join)) return (join[1] as Cfn[]).map(flatten).join(String(join[0]));
    if (node["Fn::Sub"] !== undefined) return flatten(node["Fn::Sub"]);
    const getAtt = node["Fn::GetAtt"];
    if (Array.isArray(getAtt)) return `<${flatten(getAtt[0])}.${flatten(getAtt[1])}>`;
    if (node["Ref"] !== undefined) return `<${flatten(node["Ref"])}>`;
  }
  return JSON.stringify(node);
};

/** The id cdk-nag gives a wildcard resource in an IAM policy, e.g. `AwsSolutions-IAM5[Resource::<OutputBucket1234.Arn>/_work/*]`. */
export const wildcardResourceFinding = (scope: IConstruct, resource: string): string =>
  `AwsSolutions-IAM5[Resource::${flatten(Stack.of(scope).resolve(resource) as Cfn)}]`;

/** The id cdk-nag gives a wildcard action in an IAM policy, e.g. `AwsSolutions-IAM5[Action::ecs:Submit*]`. */
export const wildcardActionFinding = (action: string): string => `AwsSolutions-IAM5[Action::${action}]`;
