/**
 * Operations: alarms (dead letters, oldest task), a dashboard (backlog, throughput, fleet size,
 * errors) and an AWS Budget, all reporting to the lab's email.
 */
import { Duration, Stack } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as budgets from "aws-cdk-lib/aws-budgets";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as cwActions from "aws-cdk-lib/aws-cloudwatch-actions";
import type * as lambda from "aws-cdk-lib/aws-lambda";
import * as sns from "aws-cdk-lib/aws-sns";
import * as subscriptions from "aws-cdk-lib/aws-sns-subscriptions";
import type * as sqs from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import { LAB_TAG_KEY, type PipelineConfig } from "./props.js";
import type { WorkerFleet } from "./WorkerFleet.js";

export interface PipelineMonitoringProps {
  readonly config: PipelineConfig;
  readonly taskQueue: sqs.IQueue;
  /** The spot lane's task queue (`spot: "per-job"`): its oldest chunk is alarmed too. */
  readonly spotTaskQueue?: sqs.IQueue;
  readonly deadLetterQueue: sqs.IQueue;
  readonly partsQueue: sqs.IQueue;
  readonly partsDeadLetterQueue: sqs.IQueue;
  readonly splitterDeadLetterQueue: sqs.IQueue;
  readonly continuationDeadLetterQueue: sqs.IQueue;
  readonly functions: Readonly<Record<"splitter" | "reducer" | "deadLetters", lambda.IFunction>>;
  readonly fleet: WorkerFleet;
}

/** Budget alerts: actual spend past 80% of the limit, forecast spend past 100%. */
export const BUDGET_THRESHOLDS = [
  { notificationType: "ACTUAL", threshold: 80 },
  { notificationType: "FORECASTED", threshold: 100 },
] as const;

const MINUTE = Duration.minutes(1);

export class PipelineMonitoring extends Construct {
  /** Every alarm publishes here; `alertEmail`, when set, is subscribed. */
  public readonly alarmTopic: sns.Topic;
  /** A chunk failed on every attempt (the dead-letter function consumes the DLQ, so arrivals count too). */
  public readonly deadLetterAlarm: cloudwatch.Alarm;
  /** The oldest queued chunk is older than `oldestTaskAlarmAge`: the fleet is not keeping up, or is not running. */
  public readonly oldestTaskAlarm: cloudwatch.Alarm;
  /** The same for the spot lane's queue (spot capacity may be short for hours). */
  public readonly oldestSpotTaskAlarm?: cloudwatch.Alarm;
  /** Part events the reducer failed on every attempt. */
  public readonly partsDeadLetterAlarm: cloudwatch.Alarm;
  /** Uploads the splitter failed on after its asynchronous retries. */
  public readonly splitterDeadLetterAlarm: cloudwatch.Alarm;
  /** Listings the splitter handed on and failed on at every try. */
  public readonly continuationDeadLetterAlarm: cloudwatch.Alarm;
  public readonly dashboard: cloudwatch.Dashboard;
  /** The monthly budget, when `budgetLimitUsd` is set. */
  public readonly budget?: budgets.CfnBudget;

  public constructor(scope: Construct, id: string, props: PipelineMonitoringProps) {
    super(scope, id);
    const { config } = props;
    const lab = config.labName;

    this.alarmTopic = new sns.Topic(this, "AlarmTopic", { displayName: `cloudmill ${lab} alarms`, enforceSSL: true });
    // A topic policy (enforceSSL writes one) replaces SNS's default policy, which is what let
    // CloudWatch publish: without this statement every alarm fails to notify ("not authorized to
    // perform: SNS:Publish"), and says so only in its own history.
    const { account, partition, region } = Stack.of(this);
    this.alarmTopic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: "AlarmsOfThisAccountPublish",
        principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["sns:Publish"],
        resources: [this.alarmTopic.topicArn],
        conditions: {
          StringEquals: { "aws:SourceAccount": account },
          ArnLike: { "aws:SourceArn": `arn:${partition}:cloudwatch:${region}:${account}:alarm:*` },
        },
      }),
    );
    if (config.alertEmail !== undefined) this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(config.alertEmail));
    const notify = new cwActions.SnsAction(this.alarmTopic);

    // A dead-letter queue that a function drains: what arrived, not only what waits, or the alarm misses it.
    const deadLetters = (queue: sqs.IQueue): cloudwatch.MathExpression =>
      new cloudwatch.MathExpression({
        expression: "FILL(visible, 0) + FILL(inFlight, 0) + FILL(received, 0)",
        usingMetrics: {
          visible: queue.metricApproximateNumberOfMessagesVisible({ period: MINUTE, statistic: "Maximum" }),
          inFlight: queue.metricApproximateNumberOfMessagesNotVisible({ period: MINUTE, statistic: "Maximum" }),
          received: queue.metricNumberOfMessagesReceived({ period: MINUTE, statistic: "Sum" }),
        },
        label: "Dead letters",
        period: MINUTE,
      });
    const deadLetterAlarm = (id: string, queue: sqs.IQueue, what: string): cloudwatch.Alarm =>
      new cloudwatch.Alarm(this, id, {
        alarmDescription: `cloudmill ${lab}: ${what}`,
        metric: deadLetters(queue),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    this.deadLetterAlarm = deadLetterAlarm(
      "DeadLetterAlarm",
      props.deadLetterQueue,
      "a chunk failed on every attempt and reached the dead-letter queue; its job is marked failed",
    );

    const oldestAlarm = (id: string, queue: sqs.IQueue, lane: string): cloudwatch.Alarm =>
      new cloudwatch.Alarm(this, id, {
        alarmDescription:
          `cloudmill ${lab}: a chunk has waited more than ${config.oldestTaskAlarmAge.toHumanString()}${lane}; the fleet is not ` +
          `keeping up or cannot start`,
        metric: queue.metricApproximateAgeOfOldestMessage({ period: MINUTE, statistic: "Maximum" }),
        threshold: config.oldestTaskAlarmAge.toSeconds(),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    this.oldestTaskAlarm = oldestAlarm("OldestTaskAlarm", props.taskQueue, "");
    if (props.spotTaskQueue) this.oldestSpotTaskAlarm = oldestAlarm("OldestSpotTaskAlarm", props.spotTaskQueue, " on the spot lane");

    this.partsDeadLetterAlarm = deadLetterAlarm(
      "PartsDeadLetterAlarm",
      props.partsDeadLetterQueue,
      "the reducer failed on a part event on every attempt; it is tried again from its dead-letter queue",
    );
    this.splitterDeadLetterAlarm = deadLetterAlarm(
      "SplitterDeadLetterAlarm",
      props.splitterDeadLetterQueue,
      "the splitter failed on an upload after its retries; its job is marked failed",
    );
    this.continuationDeadLetterAlarm = deadLetterAlarm(
      "ContinuationDeadLetterAlarm",
      props.continuationDeadLetterQueue,
      "the splitter failed on a job's listing at every try; its job is marked failed",
    );

    const alarms = [
      this.deadLetterAlarm,
      this.oldestTaskAlarm,
      ...(this.oldestSpotTaskAlarm ? [this.oldestSpotTaskAlarm] : []),
      this.partsDeadLetterAlarm,
      this.splitterDeadLetterAlarm,
      this.continuationDeadLetterAlarm,
    ];
    for (const alarm of alarms) alarm.addAlarmAction(notify);

    this.dashboard = this.createDashboard(props, alarms);
    if (config.budget !== undefined && config.alertEmail !== undefined)
      this.budget = this.createBudget(config, config.budget, config.alertEmail);
  }

  private createDashboard(props: PipelineMonitoringProps, alarms: cloudwatch.IAlarm[]): cloudwatch.Dashboard {
    const { fleet, taskQueue, spotTaskQueue, deadLetterQueue, partsQueue } = props;
    const stack = Stack.of(this);
    const max = { period: MINUTE, statistic: "Maximum" } as const;
    const sum = { period: MINUTE, statistic: "Sum" } as const;
    // Each lane's worker service (one, or the on-demand and the spot lane's).
    const lanes = [fleet, ...(fleet.spotLane ? [fleet.spotLane] : [])];
    const insightsOf = (metricName: string, label: string): cloudwatch.Metric[] =>
      lanes.map(
        (lane, i) =>
          new cloudwatch.Metric({
            namespace: "ECS/ContainerInsights",
            metricName,
            dimensionsMap: { ClusterName: fleet.cluster.clusterName, ServiceName: lane.service.serviceName },
            label: i === 0 ? label : `${label} (spot lane)`,
            ...max,
          }),
      );
    const dashboard = new cloudwatch.Dashboard(this, "Dashboard", {
      defaultInterval: Duration.hours(3),
    });
    dashboard.addWidgets(
      new cloudwatch.TextWidget({
        markdown:
          `# cloudmill — ${props.config.labName}\n` + `Stack \`${stack.stackName}\`. Chunks flow: task queue → workers → parts → reducer.`,
        width: 24,
        height: 2,
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: "Backlog (chunks)",
        width: 12,
        left: [
          taskQueue.metricApproximateNumberOfMessagesVisible({ ...max, label: "Queued" }),
          taskQueue.metricApproximateNumberOfMessagesNotVisible({ ...max, label: "In flight" }),
          deadLetterQueue.metricApproximateNumberOfMessagesVisible({ ...max, label: "Dead letters" }),
          partsQueue.metricApproximateNumberOfMessagesVisible({ ...max, label: "Part events waiting" }),
          ...(spotTaskQueue
            ? [
                spotTaskQueue.metricApproximateNumberOfMessagesVisible({ ...max, label: "Queued (spot lane)" }),
                spotTaskQueue.metricApproximateNumberOfMessagesNotVisible({ ...max, label: "In flight (spot lane)" }),
              ]
            : []),
        ],
        right: [
          taskQueue.metricApproximateAgeOfOldestMessage({ ...max, label: "Oldest chunk (s)" }),
          ...(spotTaskQueue ? [spotTaskQueue.metricApproximateAgeOfOldestMessage({ ...max, label: "Oldest chunk, spot lane (s)" })] : []),
        ],
      }),
      new cloudwatch.GraphWidget({
        title: "Throughput (per minute)",
        width: 12,
        left: [
          taskQueue.metricNumberOfMessagesSent({ ...sum, label: "Chunks queued" }),
          taskQueue.metricNumberOfMessagesDeleted({ ...sum, label: "Chunks done" }),
          partsQueue.metricNumberOfMessagesSent({ ...sum, label: "Parts written" }),
        ],
        right: [props.functions.reducer.metricInvocations({ ...sum, label: "Reducer invocations" })],
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: "Fleet size",
        width: 12,
        left: [
          ...insightsOf("DesiredTaskCount", "Workers wanted"),
          ...insightsOf("RunningTaskCount", "Workers running"),
          ...lanes.map(
            (lane, i) =>
              new cloudwatch.Metric({
                namespace: "AWS/AutoScaling",
                metricName: "GroupInServiceInstances",
                dimensionsMap: { AutoScalingGroupName: lane.autoScalingGroup.autoScalingGroupName },
                label: i === 0 ? "Instances in service" : "Instances in service (spot lane)",
                ...max,
              }),
          ),
        ],
      }),
      new cloudwatch.GraphWidget({
        title: "Errors",
        width: 12,
        left: (["splitter", "reducer", "deadLetters"] as const).map((role) =>
          props.functions[role].metricErrors({ ...sum, label: `${role} errors` }),
        ),
        right: [
          props.functions.splitter.metricThrottles({ ...sum, label: "splitter throttles" }),
          deadLetterQueue.metricNumberOfMessagesReceived({ ...sum, label: "Dead letters handled" }),
        ],
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: "Worker CPU and memory (Container Insights)",
        width: 12,
        left: [...insightsOf("CpuUtilized", "CPU units used"), ...insightsOf("CpuReserved", "CPU units reserved")],
        right: [...insightsOf("MemoryUtilized", "Memory used (MiB)"), ...insightsOf("MemoryReserved", "Memory reserved (MiB)")],
      }),
      new cloudwatch.AlarmStatusWidget({
        title: "Alarms",
        width: 12,
        alarms: [...alarms, ...lanes.flatMap((lane) => [lane.scaleOutAlarm, lane.scaleInAlarm])],
      }),
    );
    return dashboard;
  }

  private createBudget(config: PipelineConfig, budget: NonNullable<PipelineConfig["budget"]>, email: string): budgets.CfnBudget {
    return new budgets.CfnBudget(this, "Budget", {
      budget: {
        budgetName: `cloudmill-${config.labName}`,
        budgetType: "COST",
        timeUnit: "MONTHLY",
        budgetLimit: { amount: budget.limitUsd, unit: "USD" },
        ...(budget.scope === "lab" ? { costFilters: { TagKeyValue: [`user:${LAB_TAG_KEY}$${config.labName}`] } } : {}),
      },
      notificationsWithSubscribers: BUDGET_THRESHOLDS.map(({ notificationType, threshold }) => ({
        notification: { notificationType, comparisonOperator: "GREATER_THAN", threshold, thresholdType: "PERCENTAGE" },
        subscribers: [{ subscriptionType: "EMAIL", address: email }],
      })),
    });
  }
}
