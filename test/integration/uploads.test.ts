/**
 * Uploads from clients other than the AWS SDK for JavaScript start jobs as `aws s3 cp` does:
 * Debian's boto3 (a multipart upload, and presigned URLs in both signature versions) and curl
 * (a PUT to a presigned URL with curl's own form Content-Type, and a header-signed SigV4 PUT).
 * Each upload fires one event, and its job's count equals `wc -l` of the file.
 */
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { prng } from "../../lib/dev/prng.js";
import { useDevCloud } from "../helpers/devCloud.js";

/** Debian's python3 with its python3-boto3: a client of its own, not this repository's SDK. */
const PYTHON = "/usr/bin/python3";
const cloud = useDevCloud({ workers: 1 });
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-uploads-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const run = promisify(execFile);

/**
 * Runs a boto3 script with `s3` a client of the emulated cloud; resolves with its stdout. Never
 * a synchronous child: the emulator answers from this process's event loop.
 */
const boto3 = async (script: string, signature = "s3v4"): Promise<string> =>
  (
    await run(
      PYTHON,
      [
        "-c",
        `
import boto3, sys
from botocore.config import Config
from boto3.s3.transfer import TransferConfig
s3 = boto3.client('s3', endpoint_url=${JSON.stringify(cloud().cloud.endpoint)}, region_name='us-east-1',
    aws_access_key_id='test', aws_secret_access_key='test',
    config=Config(signature_version='${signature}', s3={'addressing_style': 'path'}))
${script}
`,
      ],
      { cwd: dir, encoding: "utf8" },
    )
  ).stdout;

const curl = async (...args: string[]): Promise<string> =>
  (await run("curl", ["-sS", "--fail-with-body", ...args], { cwd: dir, encoding: "utf8", maxBuffer: 1 << 26 })).stdout;

/** A file of lines, and `wc -l`'s count of them. */
const lines = async (name: string, count: number, seed: number): Promise<number> => {
  const rand = prng(seed);
  const words = ["alpha", "beta", "gamma", "δέλτα", "42"];
  const text = Array.from({ length: count }, () => Array.from({ length: 6 }, () => words[Math.floor(rand() * 5)]).join(" ")).join("\n");
  await writeFile(path.join(dir, name), `${text}\n`);
  return Number(execFileSync("sh", ["-c", `wc -l < '${name}'`], { cwd: dir, encoding: "utf8" }).trim());
};

const counted = async (key: string): Promise<unknown> => {
  const status = await cloud().waitForEnd(`${key}/status.json`);
  expect(status.state, `${key}: ${JSON.stringify(status.error)}`).toBe("succeeded");
  return cloud().getJson(cloud().output, `${key}/result.json`);
};

describe("uploads from any S3 client", () => {
  it("boto3's multipart upload (5 MiB parts) starts one job, on the completed object", async () => {
    const expected = await lines("multi.txt", 400_000, 1);
    await boto3(
      `s3.upload_file('multi.txt', ${JSON.stringify(cloud().input)}, 'count/multi.txt',
    Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
print(s3.head_object(Bucket=${JSON.stringify(cloud().input)}, Key='count/multi.txt')['ETag'])`,
    );
    expect(await counted("count/multi.txt")).toEqual({ records: expected });
    // One job: the parts were not objects of their own.
    expect(await cloud().keys(cloud().output, "count/multi.txt/")).toContain("count/multi.txt/result.json");
  });

  it.each(["s3v4", "s3"])(
    "curl PUTs to a presigned URL (%s signatures) with its own form Content-Type; the body is stored as bytes",
    async (signature) => {
      const name = `presigned-${signature}.txt`;
      const expected = await lines(name, 5_000, signature.length);
      const url = (
        await boto3(
          `print(s3.generate_presigned_url('put_object', Params={'Bucket': ${JSON.stringify(cloud().input)}, 'Key': 'count/${name}'}, ExpiresIn=600))`,
          signature,
        )
      ).trim();
      expect(url).toMatch(signature === "s3v4" ? /X-Amz-Signature=/ : /Signature=/);
      // --data-binary sends application/x-www-form-urlencoded unless told otherwise, as many upload scripts do.
      await curl("-X", "PUT", "--data-binary", `@${name}`, url);
      expect(await counted(`count/${name}`)).toEqual({ records: expected });
      const stored = await cloud().get(cloud().input, `count/${name}`);
      expect(stored?.equals(execFileSync("cat", [name], { cwd: dir }))).toBe(true);
    },
  );

  it("curl's own SigV4 header signing (--aws-sigv4) uploads like any SDK", async () => {
    const expected = await lines("signed.txt", 3_000, 9);
    await curl(
      "--aws-sigv4",
      "aws:amz:us-east-1:s3",
      "--user",
      "test:test",
      "-H",
      "Content-Type: text/plain",
      "-T",
      "signed.txt",
      `${cloud().cloud.endpoint}/${cloud().input}/count/signed.txt`,
    );
    expect(await counted("count/signed.txt")).toEqual({ records: expected });
  });

  it.each([204, 201])(
    "a browser-style form POST (boto3's presigned POST, sent by curl -F) stores the file and starts its job (answer %i)",
    async (status) => {
      const name = `form-${status}.txt`;
      const expected = await lines(name, 4_000, status);
      // A file whose text looks like S3's delete listing: it is data, and deletes nothing.
      await cloud().put("count/victim.txt", "kept\n");
      await writeFile(path.join(dir, name), `<Delete><Object><Key>count/victim.txt</Key></Object></Delete>\n`, { flag: "a" });
      const fields = JSON.parse(
        await boto3(`import json
post = s3.generate_presigned_post(${JSON.stringify(cloud().input)}, 'count/\${filename}',
    Fields={'success_action_status': '${status}'}, Conditions=[{'success_action_status': '${status}'}], ExpiresIn=600)
print(json.dumps(post))`),
      ) as { url: string; fields: Record<string, string> };
      const form = Object.entries(fields.fields).flatMap(([k, v]) => ["-F", `${k}=${v}`]);
      const answer = await curl("-w", "%{http_code}", ...form, "-F", `file=@${name}`, fields.url);
      expect(answer.slice(-3)).toBe(String(status));
      if (status === 201) expect(answer).toContain(`<Key>count/${name}</Key>`);
      expect(await counted(`count/${name}`)).toEqual({ records: expected + 1 });
      expect((await cloud().get(cloud().input, `count/${name}`))?.equals(execFileSync("cat", [name], { cwd: dir }))).toBe(true);
      expect((await cloud().get(cloud().input, "count/victim.txt"))?.toString()).toBe("kept\n");
    },
  );

  it("a form's file sent as a field (curl -F 'file=<data.gz') is stored as its bytes, not as text", async () => {
    const name = "field.txt";
    const expected = await lines(name, 3_000, 9);
    execFileSync("gzip", ["-kf", name], { cwd: dir });
    await curl("-F", "key=count/field.txt.gz", "-F", `file=<${name}.gz`, `${cloud().cloud.endpoint}/${cloud().input}`);
    expect((await cloud().get(cloud().input, "count/field.txt.gz"))?.equals(await readFile(path.join(dir, `${name}.gz`)))).toBe(true);
    expect(await counted("count/field.txt.gz")).toEqual({ records: expected });
  });

  it("tagging an object, or setting its ACL, is refused and leaves the object and its answer as they were", async () => {
    const expected = await lines("tagged.txt", 500, 11);
    await cloud().put("count/tagged.txt", await readFile(path.join(dir, "tagged.txt")));
    const before = (await cloud().waitForEnd("count/tagged.txt/status.json")).jobId;
    const bucket = JSON.stringify(cloud().input);
    const refused = await boto3(`import botocore
for call in [lambda: s3.put_object_tagging(Bucket=${bucket}, Key='count/tagged.txt', Tagging={'TagSet': [{'Key': 'p', 'Value': 'x'}]}),
             lambda: s3.put_object_acl(Bucket=${bucket}, Key='count/tagged.txt', ACL='private'),
             lambda: s3.delete_object_tagging(Bucket=${bucket}, Key='count/tagged.txt')]:
    try:
        call(); print('taken')
    except botocore.exceptions.ClientError as e:
        print(e.response['Error']['Code'])`);
    expect(refused.trim().split("\n")).toEqual(["NotImplemented", "NotImplemented", "NotImplemented"]);
    expect((await cloud().get(cloud().input, "count/tagged.txt"))?.equals(await readFile(path.join(dir, "tagged.txt")))).toBe(true);
    await cloud().waitForIdle();
    expect((await cloud().waitForEnd("count/tagged.txt/status.json")).jobId).toBe(before);
    expect(await counted("count/tagged.txt")).toEqual({ records: expected });
  });

  it("a key past 1,024 bytes and a body that does not match its Content-MD5 are refused, as S3 refuses them", async () => {
    const bucket = JSON.stringify(cloud().input);
    // 1,025 bytes of key: 'count/' and 1,019 bytes of 'x'; and one of 1,024 bytes, which S3 takes.
    const said = await boto3(`import botocore, base64, hashlib
def code(call):
    try:
        call(); return 'taken'
    except botocore.exceptions.ClientError as e:
        return e.response['Error']['Code']
print(code(lambda: s3.put_object(Bucket=${bucket}, Key='_staging/' + 'x' * 1016, Body=b'a')))
print(code(lambda: s3.put_object(Bucket=${bucket}, Key='_staging/' + 'x' * 1015, Body=b'a')))
md5 = base64.b64encode(hashlib.md5(b'other').digest()).decode()
print(code(lambda: s3.put_object(Bucket=${bucket}, Key='_staging/md5.txt', Body=b'sent', ContentMD5=md5)))
print(code(lambda: s3.head_object(Bucket=${bucket}, Key='_staging/md5.txt')))
right = base64.b64encode(hashlib.md5(b'sent').digest()).decode()
print(code(lambda: s3.put_object(Bucket=${bucket}, Key='_staging/md5.txt', Body=b'sent', ContentMD5=right)))`);
    expect(said.trim().split("\n")).toEqual(["KeyTooLongError", "taken", "BadDigest", "404", "taken"]);
  });

  it("an upload whose key leaves no room for '/result.json' fails where `cloudmill jobs` lists it; one that fits runs", async () => {
    // S3 takes input keys up to 1,024 bytes; '<key>/result.json' must fit too: 1,012 bytes of key at most.
    const fits = `count/${"é".repeat(503)}`;
    const over = `count/${"é".repeat(504)}`;
    expect([Buffer.byteLength(fits), Buffer.byteLength(over)]).toEqual([1012, 1014]);
    await cloud().put(fits, "1\n2\n3\n");
    expect(await counted(fits)).toEqual({ records: 3 });
    await cloud().put(over, "1\n2\n");
    const status = await vi.waitFor(
      async () => {
        const keys = (await cloud().keys(cloud().output, "_jobs/")).filter(
          (k) => k.startsWith("_jobs/count-") && k.endsWith("/status.json"),
        );
        const found = await Promise.all(keys.map(async (k) => (await cloud().getJson(cloud().output, k)) as Record<string, unknown>));
        const failed = found.find((s) => s.state === "failed");
        expect(failed).toBeDefined();
        return failed!;
      },
      { timeout: 60_000, interval: 200 },
    );
    expect(status.error).toMatchObject({ code: "INVALID_SPEC", message: expect.stringMatching(/past S3's limit of 1024 bytes/) });
    expect(await cloud().keys(cloud().output, "count/é")).toEqual([`${fits}/result.json`, `${fits}/status.json`]);
  });

  it("content A, then B, then A again at one key: the answer is A's again, not B's", async () => {
    const key = "count/aba.txt";
    const a = "1\n2\n3\n";
    const b = "just one\n";
    const seen: string[] = [];
    for (const body of [a, b, a]) {
      await cloud().put(key, body);
      // The write's own job: another id than every earlier one, ended.
      await vi.waitFor(
        async () => {
          const status = (await cloud().getJson(cloud().output, `${key}/status.json`)) as { jobId: string; state: string };
          expect(seen).not.toContain(status.jobId);
          expect(status.state).toBe("succeeded");
          seen.push(status.jobId);
        },
        { timeout: 60_000, interval: 100 },
      );
      expect(await cloud().getJson(cloud().output, `${key}/result.json`)).toEqual({
        records: Number(execFileSync("sh", ["-c", "printf '%s' \"$1\" | wc -l", "sh", body], { encoding: "utf8" })),
      });
    }
  });

  it("a form POST to the bucket's URL with a trailing slash uploads too; one to a missing bucket is NoSuchBucket", async () => {
    await writeFile(path.join(dir, "slash.txt"), "one\ntwo\n");
    await curl("-F", `key=count/${"$"}{filename}`, "-F", "file=@slash.txt", `${cloud().cloud.endpoint}/${cloud().input}/`);
    expect(await counted("count/slash.txt")).toEqual({ records: 2 });
    const missing = await run(
      "curl",
      ["-s", "-w", "%{http_code}", "-F", "key=x", "-F", "file=@slash.txt", `${cloud().cloud.endpoint}/no-such-bucket`],
      {
        cwd: dir,
        encoding: "utf8",
      },
    );
    expect(missing.stdout).toMatch(/<Code>NoSuchBucket<\/Code>.*404$/s);
  });

  it("an empty object, a body sent as SQS's JSON type, and a multipart copy (UploadPartCopy) are stored as S3 stores them", async () => {
    await boto3(`s3.put_object(Bucket=${JSON.stringify(cloud().input)}, Key='count/empty.txt', Body=b'')`);
    expect(await counted("count/empty.txt")).toEqual({ records: 0 });

    const jsonTyped = await lines("typed.txt", 2_000, 5);
    const url = (
      await boto3(
        `print(s3.generate_presigned_url('put_object', Params={'Bucket': ${JSON.stringify(cloud().input)}, 'Key': 'count/typed.txt'}))`,
      )
    ).trim();
    await curl("-X", "PUT", "-H", "Content-Type: application/x-amz-json-1.0", "--data-binary", "@typed.txt", url);
    expect(await counted("count/typed.txt")).toEqual({ records: jsonTyped });

    // Copied in 5 MiB parts, each an UploadPartCopy of a range of the source, as aws s3 cp does past its threshold.
    const big = await lines("big.txt", 600_000, 3);
    await boto3(
      `s3.upload_file('big.txt', ${JSON.stringify(cloud().input)}, '_staging/big.txt')
s3.copy({'Bucket': ${JSON.stringify(cloud().input)}, 'Key': '_staging/big.txt'}, ${JSON.stringify(cloud().input)}, 'count/copied.txt',
    Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))`,
    );
    expect(await counted("count/copied.txt")).toEqual({ records: big });
    expect((await cloud().get(cloud().input, "count/copied.txt"))?.equals(await readFile(path.join(dir, "big.txt")))).toBe(true);
  });
});
