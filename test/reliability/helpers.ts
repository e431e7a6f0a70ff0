/**
 * Helpers of the reliability suite (and of bench/soak.ts, which imports the parts that run
 * outside vitest from bench/chaos.ts): an emulated cloud whose host and worker log lines are
 * kept, waiting on job ends, seeded randomness, and test data with known answers.
 *
 * Everything waits by polling with generous timeouts: the machine is small and shared.
 * Never execFileSync/spawnSync here: the emulator shares this event loop.
 */
import { existsSync } from "node:fs";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { JobStatus } from "../../lib/core/job/manifest.js";
import { compiledFile } from "../../lib/local/paths.js";
import { startChaosCloud, type ChaosCloud, type ChaosCloudOptions } from "../../bench/chaos.js";

export { prng, sleep, waitFor, type LogLine } from "../../bench/chaos.js";
export type { ChaosCloud, ChaosCloudOptions };

/** Fails early, with the fix, when dist/ is missing (worker processes run it). */
export const requireBuild = (): void => {
  if (!existsSync(compiledFile("worker/main.js"))) throw new Error("build first: npx tsc -p tsconfig.build.json");
};

/** Set CLOUDMILL_TEST_VERBOSE=1 to see the dev cloud's and workers' logs on stderr. */
export const VERBOSE = process.env["CLOUDMILL_TEST_VERBOSE"] === "1";

export const startCloud = async (options: ChaosCloudOptions): Promise<ChaosCloud> => {
  requireBuild();
  return startChaosCloud({ verbose: VERBOSE, ...options });
};

/** Reads an S3 object through a client: bytes, or undefined when missing. */
export const getObject = async (c: ChaosCloud, bucket: string, key: string): Promise<Buffer | undefined> => {
  try {
    const res = await c.clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await res.Body!.transformToByteArray());
  } catch (err) {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404) return undefined;
    throw err;
  }
};

export const putObject = async (c: ChaosCloud, key: string, body: Uint8Array | string): Promise<void> => {
  await c.clients.s3.send(new PutObjectCommand({ Bucket: c.inputBucket, Key: key, Body: body }));
};

export const listKeys = async (c: ChaosCloud, bucket: string, prefix: string): Promise<string[]> => {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const res = await c.clients.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    keys.push(...(res.Contents ?? []).map((o) => o.Key!));
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token);
  return keys;
};

export const statusAt = async (c: ChaosCloud, key: string): Promise<JobStatus | undefined> => {
  const bytes = await getObject(c, c.outputBucket, key);
  return bytes === undefined ? undefined : JobStatus.parse(JSON.parse(bytes.toString("utf8")));
};
