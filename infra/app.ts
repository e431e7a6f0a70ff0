/**
 * `npx cdk synth|deploy|destroy -c lab=<name>`: one stack per lab. Offline and credential-free:
 * no lookups, no environment; configuration comes from cdk.json and `-c key=value`.
 */
import { App, Validations } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { CloudmillStack } from "./CloudmillStack.js";
import { readCloudmillContext } from "./context.js";
import { CloudmillConfigError } from "./props.js";

const app = new App();
try {
  const context = readCloudmillContext((key) => app.node.tryGetContext(key));
  new CloudmillStack(app, context.stackName, { pipeline: context.props, notices: context.warnings });
} catch (err) {
  if (!(err instanceof CloudmillConfigError)) throw err;
  console.error(err.message);
  process.exit(1);
}
// The AwsSolutions checks run on every synth; unacknowledged findings fail it.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
