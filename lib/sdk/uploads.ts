/**
 * Inputs of a job submitted from this machine: S3 URIs and prefixes are used in place; local
 * files and directories are uploaded to the input bucket under `_uploads/<jobId>/` first
 * (multipart for big files, via @aws-sdk/lib-storage) and referenced by their s3:// URIs.
 * Keys under `_` never start a job by themselves.
 */
import { createReadStream } from "node:fs";
import { HiddenFiles } from "../core/hiddenNames.js";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { parseS3Uri, s3Uri } from "../core/s3Uri.js";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import { UPLOAD_CONCURRENCY, UPLOAD_PART_BYTES, UPLOADS_PREFIX } from "./constants.js";
import type { UploadProgress } from "./types.js";
import { expandLocalManifests, walk } from "../local/localInputs.js";
import { isManifestInput, isS3Input, manifestLocation } from "../core/pipeline/inputManifests.js";

interface PlannedUpload {
  readonly file: string;
  readonly key: string;
  readonly size: number;
}

export interface StagedInputs {
  /** The job spec's inputs, all s3:// URIs, in the order given. */
  readonly uris: string[];
  /** What to upload before the spec is written. */
  readonly uploads: readonly PlannedUpload[];
  /** What the folders' listings left out (hiddenNames.ts): not uploaded. */
  readonly hidden: HiddenFiles;
}

/** Checks every input and plans the uploads; uploads nothing. Missing files are INPUT_NOT_FOUND. */
export const planInputs = async (bucket: string, jobId: string, inputs: readonly string[]): Promise<StagedInputs> => {
  const uris: string[] = [];
  const uploads: PlannedUpload[] = [];
  const used = new Set<string>();
  const hidden = new HiddenFiles();
  const base = `${UPLOADS_PREFIX}${jobId}/`;
  // A local manifest's files are uploaded as if named one by one.
  for (const [i, given] of (await expandLocalManifests(inputs)).entries()) {
    if (isS3Input(given)) {
      parseS3Uri(isManifestInput(given) ? manifestLocation(given) : given);
      uris.push(given);
      continue;
    }
    const absolute = path.resolve(given);
    const st = await stat(absolute).catch(() => undefined);
    // The name in the message itself: a script's `err.message` is all many callers show.
    if (!st || !(st.isFile() || st.isDirectory()))
      throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, `${given}: no such file or directory`);
    const given0 = path.basename(absolute) || "input";
    // Inputs of one name (a/x, b/x) each get a key of their own, one that no other input took.
    let name = given0;
    for (let n = i; used.has(name); n++) name = `${n}-${given0}`;
    used.add(name);
    if (st.isFile()) {
      uploads.push({ file: given, key: `${base}${name}`, size: st.size });
      uris.push(s3Uri(bucket, `${base}${name}`));
      continue;
    }
    const files = await walk(absolute, hidden);
    if (files.length === 0) throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, `${given}: directory holds no files`);
    for (const file of files) {
      const rel = path.relative(absolute, file).split(path.sep).join("/");
      uploads.push({ file: path.join(given, rel), key: `${base}${name}/${rel}`, size: (await stat(file)).size });
    }
    uris.push(s3Uri(bucket, `${base}${name}/`));
  }
  return { uris, uploads, hidden };
};

/** Uploads one file: a single PUT up to one part, multipart beyond (parts of 8 MiB, 4 at a time). */
export const uploadFile = async (
  s3: S3Client,
  bucket: string,
  upload: PlannedUpload,
  onProgress?: (p: UploadProgress) => void,
  signal?: AbortSignal,
): Promise<void> => {
  const uri = s3Uri(bucket, upload.key);
  const small = upload.size <= UPLOAD_PART_BYTES;
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(signal!.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const body = small ? await readFile(upload.file) : createReadStream(upload.file);
    const task = new Upload({
      client: s3,
      params: { Bucket: bucket, Key: upload.key, Body: body, ...(small ? { ContentLength: upload.size } : {}) },
      partSize: UPLOAD_PART_BYTES,
      queueSize: UPLOAD_CONCURRENCY,
      leavePartsOnError: false,
      abortController: controller,
    });
    task.on("httpUploadProgress", (p) => onProgress?.({ file: upload.file, uri, loaded: p.loaded ?? 0, total: p.total ?? upload.size }));
    await task.done();
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
};
