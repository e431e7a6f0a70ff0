/**
 * A packed task's zip entries, read as one span of their archive: a task of thousands of small
 * entries makes one ranged read, not one or two per entry (each a GET on S3, an open and a
 * stat on disk). The entries are then read from the span in memory, through the same store
 * interface, so their local headers, sizes and CRCs are checked as before.
 */
import type { Chunk } from "../job/manifest.js";
import type { BlobInfo, BlobStore, GetOptions, ListOptions, PutOptions } from "../ports.js";
import { LOCAL_HEADER_BYTES } from "../records/zip.js";
import { readBytes } from "./blobJson.js";
import type { PipelineDeps } from "./deps.js";

/** The most a span may hold: a packed task's entries fit in a chunk, which is far less. */
const MAX_SPAN_BYTES = 256 * 1024 * 1024;

/** Bytes of the archive between the task's entries (other tasks' entries) a span may carry along. */
const GAP_SLACK = 64 * 1024;

export interface ArchiveSpan {
  readonly bucket: string;
  readonly key: string;
  readonly etag: string;
  readonly start: number;
  readonly end: number;
}

/**
 * The span of one archive that holds every entry of `objects`, or undefined when they are not
 * two or more entries of one archive, or when the span would mostly hold other entries' bytes.
 */
export const archiveSpanOf = (objects: readonly Chunk[]): ArchiveSpan | undefined => {
  const first = objects[0]?.input;
  if (objects.length < 2 || !first?.member) return undefined;
  let start = Number.POSITIVE_INFINITY;
  let end = 0;
  let wanted = 0;
  for (const { input } of objects) {
    const m = input.member;
    if (!m || input.bucket !== first.bucket || input.key !== first.key || input.etag !== first.etag) return undefined;
    start = Math.min(start, m.at);
    end = Math.max(end, m.end ?? m.archiveSize);
    wanted += LOCAL_HEADER_BYTES + m.nameBytes + input.size;
  }
  const bytes = end - start;
  if (bytes > MAX_SPAN_BYTES || bytes > 2 * wanted + GAP_SLACK) return undefined;
  return { bucket: first.bucket, key: first.key, etag: first.etag, start, end };
};

/** A store that serves reads inside the span from memory and everything else from `inner`. */
class SpanStore implements BlobStore {
  constructor(
    private readonly inner: BlobStore,
    private readonly span: ArchiveSpan,
    private readonly bytes: Buffer,
  ) {}

  get name(): string {
    return this.inner.name;
  }

  head(key: string): Promise<BlobInfo | undefined> {
    return this.inner.head(key);
  }

  async get(key: string, options: GetOptions = {}): Promise<AsyncIterable<Uint8Array>> {
    const { start = 0, end, etag, signal } = options;
    const { span, bytes } = this;
    const within =
      key === span.key && (etag === undefined || etag === span.etag) && start >= span.start && end !== undefined && end <= span.end;
    if (!within || end < start) return this.inner.get(key, options);
    signal?.throwIfAborted();
    const piece = bytes.subarray(start - span.start, end - span.start);
    return (async function* () {
      if (piece.length > 0) yield piece;
    })();
  }

  put(key: string, body: Uint8Array | string | AsyncIterable<Uint8Array>, options?: PutOptions): Promise<void> {
    return this.inner.put(key, body, options);
  }

  list(prefix: string, options?: ListOptions): AsyncIterable<BlobInfo> {
    return this.inner.list(prefix, options);
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
}

/** `deps` whose input store serves the objects' archive span from one read, when they have one. */
export const withArchiveSpan = async (deps: PipelineDeps, objects: readonly Chunk[], signal?: AbortSignal): Promise<PipelineDeps> => {
  const span = archiveSpanOf(objects);
  if (!span) return deps;
  const inner = deps.inputStore(span.bucket);
  const bytes = await readBytes(inner, span.key, signal, { start: span.start, end: span.end, etag: span.etag });
  // A store clamps a range at the object's end; an archive shorter than its directory says is the entries' error to report.
  const store = new SpanStore(inner, { ...span, end: span.start + bytes.length }, bytes);
  return { ...deps, inputStore: (bucket) => (bucket === span.bucket ? store : deps.inputStore(bucket)) };
};
