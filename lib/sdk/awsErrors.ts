/**
 * AWS SDK errors as one-line CloudmillErrors (ENVIRONMENT) that say what to do: no
 * credentials, expired or rejected credentials, no such stack, access denied, no such bucket,
 * nothing listening at an emulator's endpoint, no region.
 */
import { CloudmillError, ErrorCode, oneLine } from "../core/errors.js";

/** Where a failing call was aimed, for the message. */
export interface AwsTarget {
  /** What was being done, e.g. `read stack Cloudmill-lab`, `upload data.txt`. */
  readonly action: string;
  readonly stack?: string;
  readonly endpoint?: string;
  readonly region?: string;
}

const CREDENTIAL_NAMES = new Set(["CredentialsProviderError", "TokenProviderError"]);
const EXPIRED = new Set(["ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"]);
const REJECTED = new Set([
  "InvalidClientTokenId",
  "UnrecognizedClientException",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "IncompleteSignature",
  "AuthFailure",
]);
const DENIED = new Set(["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden", "AllAccessDisabled"]);
// TimeoutError: the client's own connection or socket timeout (an endpoint that takes the connection and never answers).
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "TimeoutError",
]);

/** The SDK error inside: ours wrap theirs as `cause`. */
const innermost = (err: unknown): unknown => {
  let e = err;
  for (let i = 0; i < 5 && e instanceof CloudmillError && e.cause !== undefined; i++) e = e.cause;
  return e;
};

const fieldOf = (err: unknown, field: string): string | undefined => {
  const v = (err as Record<string, unknown> | null | undefined)?.[field];
  return typeof v === "string" ? v : undefined;
};

const httpStatusOf = (err: unknown): number | undefined =>
  (err as { $metadata?: { httpStatusCode?: number } } | null | undefined)?.$metadata?.httpStatusCode;

/** A network error code anywhere in the error (Node puts it on the error or on an AggregateError's members). */
const networkCode = (err: unknown): string | undefined => {
  const seen = new Set<unknown>();
  const walk = (e: unknown): string | undefined => {
    if (!e || typeof e !== "object" || seen.has(e)) return undefined;
    seen.add(e);
    const code = fieldOf(e, "code") ?? fieldOf(e, "name");
    if (code && UNREACHABLE.has(code)) return code;
    for (const inner of [(e as { cause?: unknown }).cause, ...((e as { errors?: unknown[] }).errors ?? [])]) {
      const found = walk(inner);
      if (found) return found;
    }
    return undefined;
  };
  return walk(err);
};

/**
 * Turns anything an AWS call threw into a CloudmillError. Our own errors other than
 * ENVIRONMENT pass through unchanged (INPUT_NOT_FOUND stays INPUT_NOT_FOUND).
 */
export const awsError = (err: unknown, target: AwsTarget): CloudmillError => {
  if (err instanceof CloudmillError && err.code !== ErrorCode.ENVIRONMENT) return err;
  const inner = innermost(err);
  const name = inner instanceof Error ? inner.name : "";
  const message = inner instanceof Error ? oneLine(inner.message) : String(inner);
  const code = fieldOf(inner, "Code") ?? fieldOf(inner, "code") ?? name;
  const env = (text: string): CloudmillError => new CloudmillError(ErrorCode.ENVIRONMENT, text, {}, { cause: err });
  const where = target.region ? ` in ${target.region}` : "";

  const net = networkCode(inner);
  if (net && target.endpoint) {
    return env(
      `cannot ${target.action}: nothing answers at ${target.endpoint} (${net}); start it with \`npx cloudmill dev\`, or check --endpoint`,
    );
  }
  if (net) return env(`cannot ${target.action}: AWS is unreachable (${net}); check the network and any proxy settings`);
  if (CREDENTIAL_NAMES.has(name) || /could not load credentials|credentials? (is|are) missing|unable to find credentials/i.test(message)) {
    return env(
      `cannot ${target.action}: no AWS credentials found; run \`aws configure\` or \`aws sso login\`, or set AWS_PROFILE (or ` +
        `AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)`,
    );
  }
  if (/region is missing/i.test(message))
    return env("no AWS region configured: set AWS_REGION, run `aws configure`, or pass --region (SDK: { region })");
  if (EXPIRED.has(code) || /token .*expired|expired token/i.test(message)) {
    return env(`cannot ${target.action}: your AWS credentials have expired; run \`aws sso login\` (or refresh them) and try again`);
  }
  if (REJECTED.has(code)) {
    return env(
      `cannot ${target.action}: AWS rejected the credentials (${code}); check AWS_PROFILE or the access keys in use (\`aws sts ` +
        `get-caller-identity\`)`,
    );
  }
  const noStack = /Stack with id (.+) does not exist/.exec(message);
  if (noStack || (name === "ValidationError" && target.stack && /does not exist/.test(message))) {
    const stack = noStack?.[1] ?? target.stack!;
    const lab = /^Cloudmill-(.+)$/.exec(stack)?.[1];
    return env(
      `no stack ${stack}${where}: deploy it with \`npx cdk deploy -c lab=${lab ?? "<lab>"}\`, or check the stack name and AWS_REGION`,
    );
  }
  if (DENIED.has(code) || (httpStatusOf(inner) === 403 && !REJECTED.has(code))) {
    return env(
      `cannot ${target.action}: access denied (${code || "403"}); ask your lab's AWS admin for access, or use a profile that has it ` +
        `(AWS_PROFILE)`,
    );
  }
  if (code === "NoSuchBucket") {
    const bucket = fieldOf(inner, "BucketName");
    const hint = target.endpoint ? ` (is \`cloudmill dev\` running at ${target.endpoint}?)` : "; check --stack or the bucket names";
    return env(`cannot ${target.action}: bucket ${bucket ? `${bucket} ` : ""}does not exist${hint}`);
  }
  if (err instanceof CloudmillError) return err;
  return env(`cannot ${target.action}: ${name || "error"}${message && message !== name ? `: ${message}` : ""}`);
};

/** Runs an AWS call, mapping what it throws with awsError; an aborted signal rethrows its reason. */
export const withAws = async <T>(target: AwsTarget, call: () => Promise<T>, signal?: AbortSignal): Promise<T> => {
  try {
    return await call();
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw awsError(err, target);
  }
};
