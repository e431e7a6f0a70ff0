/**
 * A zip archive as the inputs it holds: its central directory is read from its tail (one
 * ranged read, two more for a zip64 archive or a directory longer than the tail), and each
 * entry becomes an input read by range from the archive (zipMember.ts).
 */
import type { InputObject } from "../job/manifest.js";
import type { BlobStore } from "../ports.js";
import {
  entryName,
  findZipDirectory,
  isZip64End,
  parseZipDirectory,
  ZIP_TAIL_BYTES,
  ZIP64_END_BYTES,
  type Zip64Pointer,
  zip64Directory,
  type ZipDirectory,
} from "../records/zip.js";
import { readBytes } from "./blobJson.js";

export const zipEntriesOf = async (store: BlobStore, archive: InputObject, signal?: AbortSignal): Promise<InputObject[]> => {
  const { key, etag, size, name } = archive;
  const read = (start: number, end: number): Promise<Buffer> => readBytes(store, key, signal, { start, end, etag });
  const tailAt = Math.max(0, size - ZIP_TAIL_BYTES);
  const tail = await read(tailAt, size);
  const found = findZipDirectory(tail, tailAt, size, name);
  const record = async (at: number): Promise<Buffer> =>
    at >= tailAt ? tail.subarray(at - tailAt, at - tailAt + ZIP64_END_BYTES) : read(at, at + ZIP64_END_BYTES);
  /**
   * The zip64 end record just before its locator, where Python's zipfile reads it (bytes put before
   * the archive move where the locator says, not that); else where the locator says (extensible data between).
   */
  const zip64 = async ({ zip64At, locatorAt, nested }: Zip64Pointer): Promise<ZipDirectory> => {
    const near = locatorAt - ZIP64_END_BYTES;
    const nearRecord = near >= 0 ? await record(near) : undefined;
    if (nearRecord && isZip64End(nearRecord)) return zip64Directory(nearRecord, near, size, name, nested);
    return zip64Directory(await record(zip64At), zip64At, size, name, nested);
  };
  const dir = "zip64At" in found ? await zip64(found) : found;
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
