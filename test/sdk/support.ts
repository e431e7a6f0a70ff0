/** Helpers of the SDK tests: request counting on an S3 client, and the AWS SDK's noise. */
import { S3Client } from "@aws-sdk/client-s3";

/** An S3 client for an emulator that counts the commands it sends, by name. */
export const countingS3 = (endpoint: string): { s3: S3Client; counts: Map<string, number>; total(): number } => {
  const s3 = new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  });
  const counts = new Map<string, number>();
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const name = context.commandName ?? "?";
      counts.set(name, (counts.get(name) ?? 0) + 1);
      return next(args);
    },
    { step: "initialize", name: "countRequests" },
  );
  return { s3, counts, total: () => [...counts.values()].reduce((a, b) => a + b, 0) };
};

/** Environment for child processes: no real AWS, no instance metadata lookups, no SDK warning. */
export const childEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("AWS_") && !k.startsWith("CLOUDMILL_") && v !== undefined) env[k] = v;
  return { ...env, AWS_EC2_METADATA_DISABLED: "true", AWS_SDK_JS_SUPPRESS_NODE_VERSION_WARNING: "1", NODE_NO_WARNINGS: "1", ...extra };
};

/** A moto server (Python's AWS emulator: ECS, EC2, CloudFormation, S3, SQS wire protocols) on 127.0.0.1, port 0. */
export interface Moto {
  readonly endpoint: string;
  stop(): Promise<void>;
}

const MOTO_SERVER = `
import logging, sys
logging.disable(logging.CRITICAL)
from moto.server import ThreadedMotoServer
s = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
s.start()
print("PORT %d" % s.get_host_and_port()[1], flush=True)
sys.stdin.read()
s.stop()
`;

/** Starts moto if python3 has it (the node machine image ships moto 5.2.1); undefined otherwise. */
export const startMoto = async (): Promise<Moto | undefined> => {
  const { spawn } = await import("node:child_process");
  const child = spawn("python3", ["-c", MOTO_SERVER], { stdio: ["pipe", "pipe", "pipe"], env: childEnv() });
  let out = "";
  let err = "";
  const port = await new Promise<number | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), 30_000);
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      out += s;
      const m = /PORT (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
    child.once("error", () => resolve(undefined));
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.stdin.end();
      setTimeout(() => child.kill("SIGKILL"), 5_000).unref();
    });
  if (port === undefined) {
    await stop();
    if (!/No module named/.test(err)) process.stderr.write(`moto did not start: ${err.slice(-500)}\n`);
    return undefined;
  }
  return { endpoint: `http://127.0.0.1:${port}`, stop };
};
