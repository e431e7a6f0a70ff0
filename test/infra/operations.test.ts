import { beforeAll, describe, expect, it } from "vitest";
import type { Template } from "aws-cdk-lib/assertions";
import { oneLaneOutputs } from "../../lib/core/stack.js";
import { LAB_TAG_KEY } from "../../infra/props.js";
import { LAB_CONTEXT, SPOT_CONTEXT, resource, synth } from "./synth.js";

describe("operations", () => {
  let template: Template;
  let spot: Template;
  beforeAll(() => {
    template = synth(LAB_CONTEXT).template;
    spot = synth(SPOT_CONTEXT).template;
  });

  const alarm = (prefix: string) => resource(template, "AWS::CloudWatch::Alarm", prefix).resource.Properties!;
  const topic = () => resource(template, "AWS::SNS::Topic", "PipelineMonitoringAlarmTopic").id;
  const queue = (prefix: string) => resource(template, "AWS::SQS::Queue", prefix).id;

  describe("alarms", () => {
    it.each([
      ["PipelineMonitoringDeadLetterAlarm", "PipelineDeadLetterQueue"],
      ["PipelineMonitoringSplitterDeadLetterAlarm", "PipelineSplitterDeadLetterQueue"],
      ["PipelineMonitoringContinuationDeadLetterAlarm", "PipelineContinuationDeadLetterQueue"],
      ["PipelineMonitoringPartsDeadLetterAlarm", "PipelinePartsDeadLetterQueue"],
    ])("%s fires when a letter reaches %s, even though the dead-letter function drains it at once", (name, q) => {
      const a = alarm(name);
      expect(a).toMatchObject({ Threshold: 1, ComparisonOperator: "GreaterThanOrEqualToThreshold", AlarmActions: [{ Ref: topic() }] });
      const metrics = a["Metrics"] as {
        Id: string;
        Expression?: string;
        MetricStat?: { Metric: { MetricName: string; Dimensions: unknown } };
      }[];
      expect(metrics.find((m) => m.Expression)?.Expression).toBe("FILL(visible, 0) + FILL(inFlight, 0) + FILL(received, 0)");
      const dlq = { Name: "QueueName", Value: { "Fn::GetAtt": [queue(q), "QueueName"] } };
      expect(metrics.filter((m) => m.MetricStat).map((m) => [m.MetricStat!.Metric.MetricName, m.MetricStat!.Metric.Dimensions])).toEqual([
        ["ApproximateNumberOfMessagesVisible", [dlq]],
        ["ApproximateNumberOfMessagesNotVisible", [dlq]],
        ["NumberOfMessagesReceived", [dlq]],
      ]);
    });

    it("fire when the oldest queued chunk is older than an hour", () => {
      expect(alarm("PipelineMonitoringOldestTaskAlarm")).toMatchObject({
        MetricName: "ApproximateAgeOfOldestMessage",
        Dimensions: [{ Name: "QueueName", Value: { "Fn::GetAtt": [queue("PipelineTaskQueue"), "QueueName"] } }],
        Threshold: 3600,
        ComparisonOperator: "GreaterThanOrEqualToThreshold",
        AlarmActions: [{ Ref: topic() }],
      });
    });

    it("email the lab through a TLS-only topic", () => {
      template.hasResourceProperties("AWS::SNS::Subscription", {
        Protocol: "email",
        Endpoint: LAB_CONTEXT.alertEmail,
        TopicArn: { Ref: topic() },
      });
      const policy = resource(template, "AWS::SNS::TopicPolicy", "PipelineMonitoringAlarmTopic").resource.Properties as {
        PolicyDocument: { Statement: { Effect: string; Principal?: { Service?: string }; Action: string; Condition?: unknown }[] };
      };
      expect(JSON.stringify(policy)).toContain('"aws:SecureTransport":"false"');
      // The policy replaces SNS's default one: CloudWatch may publish only if it says so, and for this account's alarms only.
      const allows = policy.PolicyDocument.Statement.filter((s) => s.Effect === "Allow");
      expect(allows).toHaveLength(1);
      expect(allows[0]).toMatchObject({ Principal: { Service: "cloudwatch.amazonaws.com" }, Action: "sns:Publish" });
      expect(JSON.stringify(allows[0]!.Condition)).toContain("aws:SourceAccount");
    });

    it("leave nothing behind on cdk destroy: every log group the stack makes is removed with it", () => {
      for (const [id, group] of Object.entries(template.findResources("AWS::Logs::LogGroup")))
        expect(group["DeletionPolicy"], id).toBe("Delete");
    });
  });

  it("has a dashboard of backlog, throughput, fleet size and errors", () => {
    const body = JSON.stringify(
      resource(template, "AWS::CloudWatch::Dashboard", "PipelineMonitoringDashboard").resource.Properties!["DashboardBody"],
    );
    for (const title of ["Backlog (chunks)", "Throughput (per minute)", "Fleet size", "Errors"]) expect(body).toContain(title);
    for (const metric of [
      "ApproximateNumberOfMessagesVisible",
      "ApproximateNumberOfMessagesNotVisible",
      "NumberOfMessagesDeleted",
      "RunningTaskCount",
      "GroupInServiceInstances",
      "Errors",
      "MemoryUtilized",
    ]) {
      expect(body).toContain(metric);
    }
  });

  describe("budget", () => {
    it("caps monthly cost of resources tagged with the lab, alerting the lab's email at 80% actual and 100% forecast", () => {
      template.resourceCountIs("AWS::Budgets::Budget", 1);
      template.hasResourceProperties("AWS::Budgets::Budget", {
        Budget: {
          BudgetName: "cloudmill-genomics",
          BudgetType: "COST",
          TimeUnit: "MONTHLY",
          BudgetLimit: { Amount: 100, Unit: "USD" },
          CostFilters: { TagKeyValue: [`user:${LAB_TAG_KEY}$genomics`] },
        },
        NotificationsWithSubscribers: [
          {
            Notification: { NotificationType: "ACTUAL", ComparisonOperator: "GREATER_THAN", Threshold: 80, ThresholdType: "PERCENTAGE" },
            Subscribers: [{ SubscriptionType: "EMAIL", Address: LAB_CONTEXT.alertEmail }],
          },
          {
            Notification: {
              NotificationType: "FORECASTED",
              ComparisonOperator: "GREATER_THAN",
              Threshold: 100,
              ThresholdType: "PERCENTAGE",
            },
            Subscribers: [{ SubscriptionType: "EMAIL", Address: LAB_CONTEXT.alertEmail }],
          },
        ],
      });
    });

    it("can count the whole account instead", () => {
      const budget = Object.values(spot.findResources("AWS::Budgets::Budget"))[0]!["Properties"]["Budget"];
      expect(budget).toMatchObject({ BudgetName: "cloudmill-spotty", BudgetLimit: { Amount: 250, Unit: "USD" } });
      expect(budget["CostFilters"]).toBeUndefined();
    });
  });

  it("outputs exactly the names the SDK reads, pointing at the right resources", () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(Object.keys(outputs).sort()).toEqual(oneLaneOutputs().sort());
    expect(outputs["InputBucketName"]!.Value).toEqual({ Ref: resource(template, "AWS::S3::Bucket", "PipelineInputBucket").id });
    expect(outputs["OutputBucketName"]!.Value).toEqual({ Ref: resource(template, "AWS::S3::Bucket", "PipelineOutputBucket").id });
    expect(outputs["TaskQueueUrl"]!.Value).toEqual({ Ref: queue("PipelineTaskQueue") });
    expect(outputs["DeadLetterQueueUrl"]!.Value).toEqual({ Ref: queue("PipelineDeadLetterQueue") });
    expect(outputs["ClusterName"]!.Value).toEqual({ Ref: resource(template, "AWS::ECS::Cluster", "PipelineWorkersCluster").id });
    expect(outputs["ServiceName"]!.Value).toEqual({
      "Fn::GetAtt": [resource(template, "AWS::ECS::Service", "PipelineWorkersService").id, "Name"],
    });
  });

  it("tags every taggable resource with the lab, for cost allocation", () => {
    const resources = template.toJSON().Resources as Record<string, { Type: string; Properties?: Record<string, unknown> }>;
    let tagged = 0;
    for (const [id, r] of Object.entries(resources)) {
      const tags = r.Properties?.["Tags"];
      if (tags === undefined) continue;
      tagged++;
      expect(tags, id).toEqual(expect.arrayContaining([expect.objectContaining({ Key: LAB_TAG_KEY, Value: "genomics" })]));
    }
    expect(tagged).toBeGreaterThan(30);
    // Instances and volumes the fleet launches carry it too.
    const lt = resource(template, "AWS::EC2::LaunchTemplate", "PipelineWorkersLaunchTemplate").resource.Properties![
      "LaunchTemplateData"
    ] as {
      TagSpecifications: { ResourceType: string; Tags: { Key: string; Value: string }[] }[];
    };
    expect(lt.TagSpecifications.map((s) => s.ResourceType).sort()).toEqual(["instance", "volume"]);
    for (const spec of lt.TagSpecifications) expect(spec.Tags).toContainEqual({ Key: LAB_TAG_KEY, Value: "genomics" });
    expect(resource(template, "AWS::ECS::Service", "PipelineWorkersService").resource.Properties).toMatchObject({
      PropagateTags: "SERVICE",
      EnableECSManagedTags: true,
    });
  });
});
