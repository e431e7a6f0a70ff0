/**
 * The fleet view and AWS error messages over recorded AWS responses (test/sdk/recorded/),
 * served by a local HTTP server set as the clients' endpoint, so the real SDK parses them:
 * ECS JSON 1.1 (with a second ListTasks page), EC2 XML (on-demand instances have no
 * instanceLifecycle), and AWS's error bodies (AccessDenied, ExpiredToken).
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server } from "node:http";
import os from "node:os";
import path from "node:path";
import { EC2Client } from "@aws-sdk/client-ec2";
import { ECSClient } from "@aws-sdk/client-ecs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeFleetView } from "../../lib/cli/commands/fleet.js";
import { Cloudmill, CloudmillError, describeFleet } from "../../lib/sdk/index.js";
import { runProcess } from "../helpers/processes.js";
import { childEnv } from "./support.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const ecsRecorded = JSON.parse(readFileSync(path.join(import.meta.dirname, "recorded/ecs.json"), "utf8")) as Record<
  string,
  { tasks?: { taskArn: string }[] }
>;
const ec2Recorded = readFileSync(path.join(import.meta.dirname, "recorded/ec2-describe-instances.xml"), "utf8");

interface Seen {
  readonly target: string;
  readonly body: string;
}

/** Answers as AWS answered: by X-Amz-Target (ECS), Action (EC2, CloudFormation), or, for S3, an error. */
const recordedAws = (): { server: Server; seen: Seen[]; errors: Map<string, { status: number; body: string; type: string }> } => {
  const seen: Seen[] = [];
  const errors = new Map<string, { status: number; body: string; type: string }>();
  const body = (req: IncomingMessage): Promise<string> =>
    new Promise((resolve) => {
      let s = "";
      req
        .setEncoding("utf8")
        .on("data", (c: string) => (s += c))
        .on("end", () => resolve(s));
    });
  const server = createServer(async (req, res) => {
    const text = await body(req);
    const amzTarget = req.headers["x-amz-target"];
    const action =
      typeof amzTarget === "string"
        ? amzTarget.split(".").pop()!
        : (/(?:^|&)Action=([^&]+)/.exec(text)?.[1] ?? `S3 ${req.method} ${req.url}`);
    seen.push({ target: action, body: text });
    const error = errors.get(action) ?? errors.get("*");
    if (error) {
      res.writeHead(error.status, { "content-type": error.type, "x-amzn-requestid": "r-1", "x-amz-request-id": "r-1" }).end(error.body);
      return;
    }
    if (typeof amzTarget === "string") {
      let answer: unknown = ecsRecorded[action];
      const request = JSON.parse(text || "{}") as { nextToken?: string; tasks?: string[] };
      if (action === "ListTasks") answer = request.nextToken ? ecsRecorded["ListTasks#2"] : ecsRecorded["ListTasks#1"];
      if (action === "DescribeTasks") {
        const all = [...ecsRecorded["DescribeTasks"]!.tasks!, ...ecsRecorded["DescribeTasks#2"]!.tasks!];
        answer = { tasks: all.filter((t) => request.tasks?.includes(t.taskArn)), failures: [] };
      }
      res.writeHead(200, { "content-type": "application/x-amz-json-1.1", "x-amzn-requestid": "r-1" }).end(JSON.stringify(answer));
      return;
    }
    if (action === "DescribeInstances") {
      res.writeHead(200, { "content-type": "text/xml;charset=UTF-8" }).end(ec2Recorded);
      return;
    }
    res.writeHead(500).end();
  });
  return { server, seen, errors };
};

let aws: ReturnType<typeof recordedAws>;
let endpoint: string;

beforeAll(async () => {
  aws = recordedAws();
  await new Promise<void>((r) => aws.server.listen(0, "127.0.0.1", () => r()));
  const address = aws.server.address();
  endpoint = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
});
afterAll(async () => {
  await new Promise((r) => aws.server.close(r));
});

const clientConfig = () => ({
  endpoint,
  region: "eu-west-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
  maxAttempts: 1,
});

describe("fleet view over recorded AWS responses", () => {
  it("parses ECS and EC2 into desired/running/pending, tasks per instance, spot or on-demand, and reservations", async () => {
    aws.seen.length = 0;
    aws.errors.clear();
    const ecs = new ECSClient(clientConfig());
    const ec2 = new EC2Client(clientConfig());
    try {
      const view = await describeFleet({ ecs, ec2 }, { cluster: "cloudmill-mylab-workers", service: "cloudmill-mylab-worker" });
      expect(view).toEqual({
        cluster: "cloudmill-mylab-workers",
        service: "cloudmill-mylab-worker",
        desired: 4,
        running: 2,
        pending: 2,
        tasks: [
          {
            taskArn: expect.stringMatching(/0b69d5c0/),
            lastStatus: "RUNNING",
            desiredStatus: "RUNNING",
            instanceId: "i-0a1b2c3d4e5f60001",
            startedAt: new Date(1795252381250),
            cpu: 1024,
            memoryMiB: 2048,
          },
          {
            taskArn: expect.stringMatching(/1fb4d7d1/),
            lastStatus: "RUNNING",
            desiredStatus: "RUNNING",
            instanceId: "i-0a1b2c3d4e5f60001",
            startedAt: new Date(1795252383750),
            cpu: 1024,
            memoryMiB: 2048,
          },
          {
            taskArn: expect.stringMatching(/2b4f8e9a/),
            lastStatus: "PENDING",
            desiredStatus: "RUNNING",
            instanceId: "i-0f9e8d7c6b5a40002",
            cpu: 1024,
            memoryMiB: 2048,
          },
          { taskArn: expect.stringMatching(/3c5a9f0b/), lastStatus: "PROVISIONING", desiredStatus: "RUNNING", cpu: 1024, memoryMiB: 2048 },
        ],
        instances: [
          {
            instanceId: "i-0a1b2c3d4e5f60001",
            containerInstanceArn: expect.stringMatching(/a1b2c3d4e5f6EXAMPLE$/),
            type: "c7g.xlarge",
            market: "on-demand",
            launchTime: new Date("2026-11-21T09:12:44.000Z"),
            availabilityZone: "eu-west-1a",
            state: "running",
            status: "ACTIVE",
            agentConnected: true,
            runningTasks: 2,
            pendingTasks: 0,
            cpu: { registered: 4096, reserved: 2048, fraction: 0.5 },
            memoryMiB: { registered: 7680, reserved: 4096, fraction: 4096 / 7680 },
          },
          {
            instanceId: "i-0f9e8d7c6b5a40002",
            containerInstanceArn: expect.stringMatching(/f6e5d4c3b2a1EXAMPLE$/),
            type: "m7g.large",
            market: "spot",
            launchTime: new Date("2026-11-21T10:02:40.000Z"),
            availabilityZone: "eu-west-1b",
            state: "running",
            status: "ACTIVE",
            agentConnected: true,
            runningTasks: 0,
            pendingTasks: 1,
            cpu: { registered: 2048, reserved: 1024, fraction: 0.5 },
            memoryMiB: { registered: 3840, reserved: 2048, fraction: 2048 / 3840 },
          },
        ],
        reservation: {
          cpu: { registered: 6144, reserved: 3072, fraction: 0.5 },
          memoryMiB: { registered: 11520, reserved: 6144, fraction: 6144 / 11520 },
        },
      });
      // Six requests for the whole fleet: one per call, plus the second ListTasks page.
      expect(aws.seen.map((s) => s.target)).toEqual([
        "DescribeServices",
        "ListTasks",
        "ListTasks",
        "ListContainerInstances",
        "DescribeTasks",
        "DescribeContainerInstances",
        "DescribeInstances",
      ]);
      expect(aws.seen.at(-1)!.body).toContain("InstanceId.1=i-0a1b2c3d4e5f60001&InstanceId.2=i-0f9e8d7c6b5a40002");

      const text = describeFleetView(view, Date.parse("2026-11-21T11:12:44Z"));
      expect(text).toBe(
        [
          "service cloudmill-mylab-worker in cluster cloudmill-mylab-workers: 4 desired, 2 running, 2 pending worker task(s)",
          "INSTANCE             TYPE        MARKET     LAUNCHED                     TASKS  CPU RESERVED   MEMORY RESERVED",
          "i-0a1b2c3d4e5f60001  c7g.xlarge  on-demand  2026-11-21 09:12Z (2h ago)   2      2048/4096 50%  4096/7680 MiB 53%",
          "i-0f9e8d7c6b5a40002  m7g.large   spot       2026-11-21 10:02Z (70m ago)  0+1    1024/2048 50%  2048/3840 MiB 53%",
          "in all: CPU 3072/6144 50%, memory 6144/11520 MiB 53% reserved",
        ].join("\n"),
      );
    } finally {
      ecs.destroy();
      ec2.destroy();
    }
  });

  it("access denied to ECS is one line that says whom to ask", async () => {
    aws.errors.clear();
    aws.errors.set("DescribeServices", {
      status: 400,
      type: "application/x-amz-json-1.1",
      body: JSON.stringify({
        __type: "AccessDeniedException",
        message: "User: arn:aws:iam::123456789012:user/ana is not authorized to perform: ecs:DescribeServices",
      }),
    });
    const ecs = new ECSClient(clientConfig());
    const ec2 = new EC2Client(clientConfig());
    try {
      const err = await describeFleet({ ecs, ec2 }, { cluster: "c", service: "s" }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CloudmillError);
      expect((err as CloudmillError).message).toBe(
        "cannot describe ECS service s: access denied (AccessDeniedException); ask your lab's AWS admin for access, or use a profile that has it (AWS_PROFILE)",
      );
    } finally {
      aws.errors.clear();
      ecs.destroy();
      ec2.destroy();
    }
  });
});

describe("AWS errors as one line that says what to do", () => {
  it("S3 AccessDenied on a job's status", async () => {
    aws.errors.set("*", {
      status: 403,
      type: "application/xml",
      body: '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>R1</RequestId><HostId>H1</HostId></Error>',
    });
    const mill = new Cloudmill({ endpoint, region: "eu-west-1", inputBucket: "lab-in", outputBucket: "lab-out" }, {});
    try {
      const err = await mill
        .job("job-20261121T101500-0badcafe")
        .status()
        .catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: "ENVIRONMENT",
        message:
          "cannot read s3://lab-out/_jobs/job-20261121T101500-0badcafe/status.json: access denied (AccessDenied); ask your lab's AWS admin for access, or use a profile that has it (AWS_PROFILE)",
      });
    } finally {
      aws.errors.clear();
      mill.close();
    }
  });

  it("expired credentials when reading the stack", async () => {
    aws.errors.set("DescribeStacks", {
      status: 403,
      type: "text/xml",
      body: '<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type><Code>ExpiredToken</Code><Message>The security token included in the request is expired</Message></Error><RequestId>r-2</RequestId></ErrorResponse>',
    });
    const err = await Cloudmill.connect({ stack: "Cloudmill-mylab", endpoint, region: "eu-west-1" }, {}).catch((e: unknown) => e);
    aws.errors.clear();
    expect(err).toMatchObject({
      code: "ENVIRONMENT",
      message: "cannot read stack Cloudmill-mylab: your AWS credentials have expired; run `aws sso login` (or refresh them) and try again",
    });
  });

  it("nothing listening at the endpoint says to start cloudmill dev", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", () => r()));
    const address = closed.address();
    await new Promise((r) => closed.close(r));
    const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 1}`;
    const mill = new Cloudmill({ endpoint: url }, {});
    try {
      await expect(mill.jobs()).rejects.toMatchObject({
        code: "ENVIRONMENT",
        message: `cannot list jobs in s3://cloudmill-output/: nothing answers at ${url} (ECONNREFUSED); start it with \`npx cloudmill dev\`, or check --endpoint`,
      });
    } finally {
      mill.close();
    }
  });

  it("an endpoint that takes the connection and never answers is the same one line, not a hang", async () => {
    // Takes every request and never answers it (a hung proxy, a stopped emulator's port kept open).
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    const address = silent.address();
    const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 1}`;
    const mill = new Cloudmill({ endpoint: url, requestTimeoutMs: 500 }, {});
    try {
      const nothing =
        /^cannot .*: nothing answers at http:\/\/127\.0\.0\.1:\d+ \(TimeoutError\); start it with `npx cloudmill dev`, or check --endpoint$/;
      await expect(mill.jobs()).rejects.toMatchObject({ code: "ENVIRONMENT", message: expect.stringMatching(nothing) });
      await expect(mill.job("job-20261206T101500-0badcafe").cancel()).rejects.toMatchObject({ message: expect.stringMatching(nothing) });
    } finally {
      mill.close();
      silent.closeAllConnections();
      await new Promise((r) => silent.close(r));
    }
  });

  it("no credentials anywhere (the SDK's default chain, in a clean environment) is one line and exit code 7", async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), "cloudmill-nocreds-"));
    try {
      const env = childEnv({
        HOME: home,
        AWS_REGION: "eu-west-1",
        AWS_CONFIG_FILE: path.join(home, "none"),
        AWS_SHARED_CREDENTIALS_FILE: path.join(home, "none"),
      });
      const r = await runProcess(process.execPath, [path.join(ROOT, "bin/cloudmill.js"), "jobs", "--stack", "Cloudmill-mylab"], {
        cwd: ROOT,
        env,
      });
      expect(r.code).toBe(7);
      expect(r.stdout).toBe("");
      expect(r.stderr).toBe(
        "cloudmill: cannot read stack Cloudmill-mylab: no AWS credentials found; run `aws configure` or `aws sso login`, or set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)\n",
      );
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  }, 30_000);
});
