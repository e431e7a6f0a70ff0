/**
 * A zip archive as the inputs it holds: its central directory is read from its tail (one
 * ranged read, two more for a zip64 archive or a directory longer than the tail), and each
 * entry becomes an input read by range from the archive (zipMember.ts).
 */
import type { InputObject } from "../job/manifest.js";
import type { BlobStore } from "../ports.js";
import { entryName, findZipDirectory, parseZipDirectory, ZIP_TAIL_BYTES, zip64Directory } from "../records/zip.js";
import { readBytes } from "./blobJson.js";

/** Bytes of a zip64 end record. */
const ZIP64_END_BYTES = 56;

export const zipEntriesOf = async (store: BlobStore, archive: InputObject, signal?: AbortSignal): Promise<InputObject[]> => {
  const { key, etag, size, name } = archive;
  const read = (start: number, end: number): Promise<Buffer> => readBytes(store, key, signal, { start, end, etag });
  const tailAt = Math.max(0, size - ZIP_TAIL_BYTES);
  const tail = await read(tailAt, size);
  const found = findZipDirectory(tail, tailAt, size, name);
  const dir =
    "zip64At" in found ? zip64Directory(await read(found.zip64At, found.zip64At + ZIP64_END_BYTES), found.zip64At, size, name) : found;
  const listing = dir.at >= tailAt ? tail.subarray(dir.at - tailAt, dir.at - tailAt + dir.bytes) : await read(dir.at, dir.at + dir.bytes);
  return parseZipDirectory(listing, dir, size, name).map((e) => ({
    bucket: archive.bucket,
    key,
    etag,
    size: e.compressedSize,
    name: entryName(name, e.name),
    member: {
      at: e.at,
      method: e.method,
      crc32: e.crc32,
      size: e.size,
      nameBytes: e.nameBytes,
      entry: e.name,
      end: e.end,
      archiveSize: size,
    },
  }));
};
