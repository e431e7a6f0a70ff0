/**
 * Two S3 request forms the emulator's S3 (fauxqs 1.9.2) lacks, read here so the emulator can
 * answer them as S3 does:
 *
 * - a POST-policy upload (`POST /<bucket>`, multipart/form-data): what a browser form or
 *   boto3's `generate_presigned_post` sends. fauxqs routes every POST to a bucket to
 *   DeleteObjects, which read the form as a delete list: the upload was lost, and a file that
 *   held `<Key>…</Key>` deleted that key.
 * - UploadPartCopy (`PUT` of a part with `x-amz-copy-source`): how `aws s3 cp` and boto3 copy
 *   an object past their multipart threshold. fauxqs stored the empty body and failed.
 *
 * The form's policy and signature are not checked: the emulator takes any credentials.
 */

/** What a POST-policy upload stores, and how it is answered. */
export interface FormUpload {
  readonly key: string;
  readonly body: Buffer;
  readonly contentType: string;
  readonly metadata: Record<string, string>;
  /** `success_action_status`: 200, 201 (with an XML body) or 204, S3's default. */
  readonly status: 200 | 201 | 204;
}

/** A request S3 would refuse: its error code and HTTP status. */
export class S3Refusal extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

/** Whether a request is a POST-policy upload: a POST to a bucket (`/b` or `/b/`) whose body is a form. */
export const isFormUpload = (
  method: string,
  route: string | undefined,
  key: string | undefined,
  contentType: string | undefined,
): boolean =>
  method === "POST" && (route === "/:bucket" || (route === "/:bucket/*" && !key)) && /^multipart\/form-data\b/i.test(contentType ?? "");

/** What S3 replaces in a form's key with the uploaded file's name. */
const FILENAME = "$" + "{filename}";

/** The upload a POST-policy form asks for (field names are case-insensitive, as S3 reads them). */
export const parseFormUpload = async (body: Buffer, contentType: string): Promise<FormUpload> => {
  let form: FormData;
  try {
    form = await new Response(body, { headers: { "content-type": contentType } }).formData();
  } catch {
    throw new S3Refusal("MalformedPOSTRequest", "The body of your POST request is not well-formed multipart/form-data.");
  }
  const fields = new Map<string, string>();
  let file: Blob | undefined;
  for (const [name, value] of form) {
    if (name.toLowerCase() === "file") file = typeof value === "string" ? new Blob([value]) : value;
    else if (typeof value === "string") fields.set(name.toLowerCase(), value);
  }
  if (file === undefined) throw new S3Refusal("InvalidArgument", "POST requires exactly one file upload per request.");
  const named = fields.get("key");
  if (!named) throw new S3Refusal("InvalidArgument", "Bucket POST must contain a field named 'key'.");
  const filename = file instanceof File ? file.name : "";
  const metadata: Record<string, string> = {};
  for (const [name, value] of fields) if (name.startsWith("x-amz-meta-")) metadata[name.slice("x-amz-meta-".length)] = value;
  const status = Number(fields.get("success_action_status"));
  return {
    key: named.replaceAll(FILENAME, filename),
    body: Buffer.from(await file.arrayBuffer()),
    contentType: fields.get("content-type") ?? "binary/octet-stream",
    metadata,
    status: status === 200 || status === 201 ? status : 204,
  };
};

/** The object and bytes an UploadPartCopy names: `x-amz-copy-source` and `x-amz-copy-source-range`. */
export const partCopySource = (
  source: string,
  range: string | undefined,
): { readonly bucket: string; readonly key: string; readonly range?: readonly [number, number] } => {
  const path = decodeURIComponent(source.split("?")[0]!).replace(/^\//, "");
  const slash = path.indexOf("/");
  if (slash <= 0) throw new S3Refusal("InvalidArgument", "Invalid copy source bucket name");
  const bounds = range === undefined ? undefined : /^bytes=(\d+)-(\d+)$/.exec(range);
  if (range !== undefined && (!bounds || Number(bounds[1]) > Number(bounds[2])))
    throw new S3Refusal("InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last.");
  return {
    bucket: path.slice(0, slash),
    key: path.slice(slash + 1),
    ...(bounds ? { range: [Number(bounds[1]), Number(bounds[2])] as const } : {}),
  };
};

/** What S3 answers a form upload whose success_action_status is 201. */
export const postResponseXml = (location: string, bucket: string, key: string, etag: string): string =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse><Location>${escapeXml(location)}</Location>` +
  `<Bucket>${escapeXml(bucket)}</Bucket><Key>${escapeXml(key)}</Key><ETag>${escapeXml(etag)}</ETag></PostResponse>`;

/** An S3 error body. */
export const s3ErrorXml = (code: string, message: string): string =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${escapeXml(message)}</Message></Error>`;

export const escapeXml = (text: string): string =>
  text.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]!);
