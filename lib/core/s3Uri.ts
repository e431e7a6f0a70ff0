/** S3 object URIs (`s3://bucket/key`) and the bucket-name rule, shared by the roles, SDK and stack. */
import { CloudmillError, ErrorCode } from "./errors.js";

/** S3's rule for a bucket name: 3–63 lowercase letters, digits, dots and hyphens, alphanumeric at both ends. */
export const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export const s3Uri = (bucket: string, key: string): string => `s3://${bucket}/${key}`;

/** `s3://bucket/some/key` → { bucket, key }. The key is taken literally (S3 URIs are not URL-encoded). */
export const parseS3Uri = (uri: string): { bucket: string; key: string } => {
  const m = /^s3:\/\/([^/]+)\/(.+)$/s.exec(uri);
  if (!m || !BUCKET_NAME.test(m[1]!)) {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `not an S3 object URI: ${JSON.stringify(uri)} (expected s3://bucket/key)`);
  }
  return { bucket: m[1]!, key: m[2]! };
};
