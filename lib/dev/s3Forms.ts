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

/** One part of a multipart/form-data body: its field name, file name if any, and bytes as sent. */
interface FormPart {
  readonly name: string;
  readonly filename?: string;
  readonly body: Buffer;
}

/**
 * The parts of a multipart/form-data body, each part's bytes as sent: a file sent as a plain
 * field (curl -F 'file=<data.gz') is bytes too, never text decoded and encoded again.
 */
const formParts = (body: Buffer, contentType: string): FormPart[] => {
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const malformed = new S3Refusal("MalformedPOSTRequest", "The body of your POST request is not well-formed multipart/form-data.");
  if (!boundary) throw malformed;
  const delimiter = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const parts: FormPart[] = [];
  let at = body.indexOf(delimiter);
  if (at < 0) throw malformed;
  for (;;) {
    at += delimiter.length;
    if (body.subarray(at, at + 2).toString("latin1") === "--") return parts;
    const headersEnd = body.indexOf("\r\n\r\n", at);
    const next = body.indexOf(Buffer.concat([Buffer.from("\r\n"), delimiter]), headersEnd);
    if (headersEnd < 0 || next < 0) throw malformed;
    const headers = body.subarray(at, headersEnd).toString("utf8");
    const disposition = /^content-disposition:(.*)$/im.exec(headers)?.[1] ?? "";
    const name = /\bname="([^"]*)"/i.exec(disposition)?.[1];
    const filename = /\bfilename="([^"]*)"/i.exec(disposition)?.[1];
    if (name === undefined) throw malformed;
    parts.push({ name, ...(filename !== undefined ? { filename } : {}), body: body.subarray(headersEnd + 4, next) });
    at = next + 2;
  }
};

/**
 * The upload a POST-policy form asks for (field names are case-insensitive, as S3 reads them).
 * Fields after the file are ignored, as S3 ignores them.
 */
export const parseFormUpload = async (body: Buffer, contentType: string): Promise<FormUpload> => {
  const fields = new Map<string, string>();
  let file: FormPart | undefined;
  for (const part of formParts(body, contentType)) {
    if (part.name.toLowerCase() === "file") {
      file = part;
      break;
    }
    fields.set(part.name.toLowerCase(), part.body.toString("utf8"));
  }
  if (file === undefined) throw new S3Refusal("InvalidArgument", "POST requires exactly one file upload per request.");
  const named = fields.get("key");
  if (!named) throw new S3Refusal("InvalidArgument", "Bucket POST must contain a field named 'key'.");
  const metadata: Record<string, string> = {};
  for (const [name, value] of fields) if (name.startsWith("x-amz-meta-")) metadata[name.slice("x-amz-meta-".length)] = value;
  const status = Number(fields.get("success_action_status"));
  return {
    key: named.replaceAll(FILENAME, file.filename ?? ""),
    body: Buffer.from(file.body),
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
