/** S3 inputs of a job: object URIs as they are, prefixes (`s3://b/dir/`) as every object under them. */
import { parseS3Uri, s3Uri } from "../s3Uri.js";
import { CloudmillError, ErrorCode } from "../errors.js";
import type { InputObject } from "../job/manifest.js";
import type { PipelineDeps } from "./deps.js";

/** Objects a prefix listing skips: folder markers and cloudmill's own state. */
const skippable = (key: string, size: number): boolean => (key.endsWith("/") && size === 0) || key.split("/").some((s) => s === "_work");

export const resolveS3Inputs = async (deps: Pick<PipelineDeps, "inputStore">, uris: readonly string[]): Promise<InputObject[]> => {
  const out: InputObject[] = [];
  for (const uri of uris) {
    if (!uri.startsWith("s3://")) {
      throw new CloudmillError(ErrorCode.INVALID_SPEC, `inputs of a job in the cloud must be s3:// URIs, got ${JSON.stringify(uri)}`, {
        field: "inputs",
      });
    }
    const { bucket, key } = parseS3Uri(uri);
    const store = deps.inputStore(bucket);
    const info = key.endsWith("/") ? undefined : await store.head(key);
    if (info) {
      out.push({ bucket, key, size: info.size, etag: info.etag, name: uri });
      continue;
    }
    const prefix = key.endsWith("/") ? key : `${key}/`;
    let found = 0;
    for await (const o of store.list(prefix)) {
      if (skippable(o.key, o.size)) continue;
      out.push({ bucket, key: o.key, size: o.size, etag: o.etag, name: s3Uri(bucket, o.key) });
      found++;
    }
    if (found === 0) throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, "no such object or prefix", { input: uri });
  }
  return out;
};
