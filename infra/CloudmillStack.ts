import { Annotations, CfnOutput, Stack, Tags, type StackProps } from "aws-cdk-lib";
import type { Construct } from "constructs";
import { CloudmillPipeline } from "./CloudmillPipeline.js";
import { STACK_OUTPUTS, type StackOutputField } from "../lib/core/stack.js";
import { LAB_TAG_KEY, type CloudmillPipelineProps } from "./props.js";

export interface CloudmillStackProps extends StackProps {
  /** The pipeline's props; its lab name also tags the stack. */
  readonly pipeline: CloudmillPipelineProps;
  /**
   * Notes for whoever synthesizes, reported as warnings.
   * @default - none
   */
  readonly notices?: readonly string[];
}

/** One lab's pipeline, with the outputs the SDK reads. Environment-agnostic: synthesizes offline. */
export class CloudmillStack extends Stack {
  public readonly pipeline: CloudmillPipeline;

  public constructor(scope: Construct, id: string, props: CloudmillStackProps) {
    super(scope, id, {
      description: `cloudmill: map/reduce over big files, for lab ${props.pipeline.labName}`,
      ...props,
    });
    Tags.of(this).add(LAB_TAG_KEY, props.pipeline.labName);
    this.pipeline = new CloudmillPipeline(this, "Pipeline", props.pipeline);
    for (const notice of props.notices ?? []) Annotations.of(this).addWarningV2("cloudmill:notice", notice);

    const p = this.pipeline;
    const outputs: { [K in StackOutputField]?: { value: string; description: string } } = {
      inputBucket: { value: p.inputBucket.bucketName, description: "Upload <op>/<path> here to start a job" },
      outputBucket: { value: p.outputBucket.bucketName, description: "Results: <op>/<path>/result.json and status.json" },
      taskQueueUrl: { value: p.taskQueue.queueUrl, description: "One message per chunk" },
      deadLetterQueueUrl: { value: p.deadLetterQueue.queueUrl, description: "Chunks that failed every attempt" },
      cluster: { value: p.fleet.cluster.clusterName, description: "ECS cluster of the workers" },
      service: { value: p.fleet.service.serviceName, description: "ECS service of the workers" },
      ...(p.fleet.spotLane && p.spotTaskQueue
        ? {
            spotService: { value: p.fleet.spotLane.service.serviceName, description: "ECS service of the spot lane's workers" },
            spotTaskQueueUrl: { value: p.spotTaskQueue.queueUrl, description: "Chunks of jobs that prefer cheapest" },
          }
        : {}),
    };
    for (const [key, output] of Object.entries(outputs)) {
      if (output) new CfnOutput(this, STACK_OUTPUTS[key as StackOutputField], { value: output.value, description: output.description });
    }
  }
}
