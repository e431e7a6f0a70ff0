/**
 * Zip archives, read the way S3 lets us: the central directory from the archive's tail, then
 * each entry by range, never the whole archive. Each entry becomes an input of its own.
 *
 * What a hostile archive can try, and what stops it:
 * - a name that climbs out of the archive (`../x`, `/etc/x`, `C:\x`): the archive is refused;
 * - entries that share bytes (a non-recursive zip bomb): refused when their ranges overlap, and
 *   when a long local extra field moves an entry's data into the next entry (zipMember.ts);
 * - a local header that names another file than the directory: the read fails;
 * - an entry that inflates past its declared size: its read fails at that byte (zipMember.ts);
 * - a wrong CRC-32, a truncated entry or directory: the read fails, naming the byte.
 *
 * Bytes put before an archive (a self-extractor's stub, `cat stub a.zip`) move everything in it
 * while its offsets stay as written: its central directory then ends that many bytes before its
 * end record. As Python's zipfile and unzip do, every offset is read as moved by that many (its
 * `shift`; 0 once `zip -A` has rewritten them), and the directory and each local header must be
 * found where the shift puts them, or the archive is refused. An end record that lies in another
 * end record's comment (a forged one that would hide entries) is never read shifted.
 */
import { CloudmillError, ErrorCode } from "../errors.js";

/** What the end of an archive holds at most: the end record with the longest comment, and the zip64 locator before it. */
export const ZIP_TAIL_BYTES = 22 + 0xffff + 20;

/** A zip archive's first four bytes (a local file header), or those of an empty archive (an end record). */
export const isZipMagic = (b: Uint8Array): boolean =>
  b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && ((b[2] === 3 && b[3] === 4) || (b[2] === 5 && b[3] === 6));

/** Names that say "zip" (`.zip`, any case). */
export const isZipName = (name: string): boolean => /\.zip$/i.test(name);

const SIG = { local: 0x04034b50, central: 0x02014b50, end: 0x06054b50, end64: 0x06064b50, locator64: 0x07064b50 } as const;

/** Compression methods read: stored and deflate. Others are named in the refusal. */
const METHODS: Readonly<Record<number, "stored" | "deflate">> = { 0: "stored", 8: "deflate" };
const METHOD_NAMES: Readonly<Record<number, string>> = { 9: "deflate64", 12: "bzip2", 14: "LZMA", 93: "zstd", 95: "xz", 99: "AES" };

/** Fixed bytes of a local file header, before its name and extra field. */
export const LOCAL_HEADER_BYTES = 30;

/** One entry as the central directory records it. */
export interface ZipEntry {
  readonly name: string;
  readonly method: "stored" | "deflate";
  readonly crc32: number;
  readonly compressedSize: number;
  readonly size: number;
  /** Where its local header starts in the archive. */
  readonly at: number;
  /** Bytes of its name as stored (the local header repeats them). */
  readonly nameBytes: number;
  /** Where the next entry's local header, or the central directory, starts: its data ends by then. */
  readonly end: number;
}

/** Where the central directory is, from the end record (and the zip64 one, for a big archive). */
export interface ZipDirectory {
  /** Where the directory is in the archive: where its end record says, plus `shift`. */
  readonly at: number;
  readonly bytes: number;
  readonly entries: number;
  /** Bytes put before the archive after its offsets were written: each offset it records is off by as many (unset: 0). */
  readonly shift?: number;
}

/** Where a zip64 end record may be: where its locator says, and just before the locator (where Python's zipfile reads it). */
export interface Zip64Pointer {
  readonly zip64At: number;
  readonly locatorAt: number;
  /** The end record lies in another end record's comment. */
  readonly nested: boolean;
}

/** Bytes of a zip64 end record (without extensible data). */
export const ZIP64_END_BYTES = 56;

/**
 * A refusal of an archive's structure, naming the archive and the byte. `decoded`: the input is an
 * entry and `at` a byte of its decoded data (a line can be counted there), not of the archive.
 */
export const zipError = (input: string, at: number, what: string, decoded = false): CloudmillError =>
  new CloudmillError(ErrorCode.BAD_RECORD, `zip archive: ${what}`, { input, offset: at, ...(decoded ? {} : { binary: true }) });

const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** An unsigned 64-bit field as a number; past 2^53 it cannot be an offset into a real object. */
const u64 = (d: DataView, at: number, archive: string, where: number): number => {
  const v = d.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw zipError(archive, where, `a 64-bit size or offset (${v}) is past any real object`);
  return Number(v);
};

/**
 * Finds the end record in `tail`, the archive's last bytes (starting at archive byte `tailAt`).
 * Returns the directory, or where the zip64 end record is when the archive needs one (the
 * caller reads those 56 bytes and calls `zip64Directory`).
 */
export const findZipDirectory = (tail: Uint8Array, tailAt: number, archiveSize: number, archive: string): ZipDirectory | Zip64Pointer => {
  const d = view(tail);
  /** An end record whose comment reaches the tail's end. */
  const isEnd = (i: number): boolean => d.getUint32(i, true) === SIG.end && i + 22 + d.getUint16(i + 20, true) === tail.length;
  // The end record is 22 bytes plus its comment; search backwards for one whose comment reaches the end.
  for (let i = tail.length - 22; i >= 0; i--) {
    if (!isEnd(i)) continue;
    let nested = false;
    for (let j = i - 1; j >= 0 && !nested; j--) nested = isEnd(j);
    const entries = d.getUint16(i + 10, true);
    const bytes = d.getUint32(i + 12, true);
    const at = d.getUint32(i + 16, true);
    const loc = i - 20;
    const located = loc >= 0 && d.getUint32(loc, true) === SIG.locator64;
    if (entries === 0xffff || bytes === 0xffffffff || at === 0xffffffff) {
      if (located) return { zip64At: u64(d, loc + 8, archive, tailAt + loc), locatorAt: tailAt + loc, nested };
      // Python's zipfile writes exactly 65,535 entries so, with no zip64 record: the count stands.
      if (bytes === 0xffffffff || at === 0xffffffff)
        throw zipError(archive, tailAt + i, "its end record asks for zip64, but no zip64 locator precedes it");
    }
    // A zip64 end record (and its locator) may precede a classic end record whose figures fit: the
    // directory ends where that record is, just before its locator (else where the locator says).
    const near = loc - ZIP64_END_BYTES;
    const zip64At = !located
      ? undefined
      : near >= 0 && d.getUint32(near, true) === SIG.end64
        ? tailAt + near
        : u64(d, loc + 8, archive, tailAt + loc);
    return checkedDirectory({ at, bytes, entries }, tailAt + i, archive, { zip64At, nested });
  }
  throw zipError(archive, archiveSize, "no end-of-central-directory record in its last bytes: it is truncated, or not a zip archive");
};

/** Whether a zip64 end record starts `record`. */
export const isZip64End = (record: Uint8Array): boolean =>
  record.length >= ZIP64_END_BYTES && view(record).getUint32(0, true) === SIG.end64;

/** The directory a zip64 end record (its 56 bytes, read at `at`) names; `nested`: see Zip64Pointer. */
export const zip64Directory = (record: Uint8Array, at: number, archiveSize: number, archive: string, nested = false): ZipDirectory => {
  const d = view(record);
  if (!isZip64End(record)) throw zipError(archive, at, "no zip64 end record where its locator points");
  return checkedDirectory(
    { entries: u64(d, 32, archive, at), bytes: u64(d, 40, archive, at), at: u64(d, 48, archive, at) },
    Math.min(at, archiveSize),
    archive,
    { nested },
  );
};

/** Largest central directory read: about two million entries of typical names. */
const MAX_DIRECTORY_BYTES = 256 * 1024 * 1024;

/**
 * A directory as its end record (at `endAt`) names it, checked: it must end where that record
 * (or the zip64 end record at `zip64At`) begins. One that ends sooner names an archive with bytes
 * put before it (its offsets all off by as many: its `shift`), unless its end record lies in
 * another's comment: then it is forged, to hide entries.
 */
const checkedDirectory = (
  found: ZipDirectory,
  endAt: number,
  archive: string,
  { zip64At, nested }: { readonly zip64At?: number | undefined; readonly nested: boolean },
): ZipDirectory => {
  let dir = found;
  if (dir.bytes > MAX_DIRECTORY_BYTES)
    throw zipError(
      archive,
      dir.at,
      `its central directory is ${dir.bytes} bytes, more than the ${MAX_DIRECTORY_BYTES} read; split the archive`,
    );
  if (dir.at + dir.bytes > endAt) throw zipError(archive, dir.at, `its central directory (${dir.bytes} bytes) runs past its end record`);
  const ends = dir.at + dir.bytes;
  if (zip64At !== undefined && ends > zip64At)
    throw zipError(archive, dir.at, `its central directory (${dir.bytes} bytes) runs past its zip64 end record`);
  if (ends !== endAt && ends !== zip64At) {
    const shift = (zip64At ?? endAt) - ends;
    if (nested)
      throw zipError(
        archive,
        endAt,
        `its central directory ends ${shift} bytes before its end record, which lies in another end record's comment: ` +
          "the end record is forged; repair the archive (zip -FF) or extract and zip it again",
      );
    dir = { ...dir, at: dir.at + shift, shift };
  }
  // An archive of no entries is its end record alone: bytes before one are another file's (Python's
  // zipfile, appending to a file it could not read as a zip, writes just such a record after it).
  if (dir.entries === 0 && dir.at > 0)
    throw zipError(
      archive,
      0,
      `its directory lists no entries, yet ${dir.at} bytes come before it: not a zip archive ` +
        "(an empty archive appended to another file?)",
    );
  // Each directory entry takes at least 46 bytes: more entries than that cannot be real.
  if (dir.entries * 46 > dir.bytes) throw zipError(archive, dir.at, `${dir.entries} entries do not fit in ${dir.bytes} bytes of directory`);
  return dir;
};

/**
 * Whether a name stays inside the archive once extracted: relative, no `..` segment, no drive
 * letter or backslash (Windows separators), no control characters.
 */
const unsafeName = (name: string): string | undefined => {
  if (name.length === 0) return "an empty name";
  if (name.startsWith("/")) return "an absolute path";
  if (/^[A-Za-z]:/.test(name) || name.includes("\\")) return "a Windows path";
  if (name.split("/").some((s) => s === "..")) return "a '..' segment (extracted, it would land outside its folder)";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
  if (/[\u0000-\u001f]/.test(name)) return "a control character";
  return undefined;
};

/** Entries that hold no data of the archive's own: folders, and macOS's resource forks (`__MACOSX/`). */
const isMetadata = (name: string): boolean => name.endsWith("/") || name.startsWith("__MACOSX/");

/**
 * The entries of a central directory (`bytes`, read at `dir.at`), in directory order, folders
 * and macOS metadata left out. Refuses what the module comment lists.
 */
export const parseZipDirectory = (bytes: Uint8Array, dir: ZipDirectory, archiveSize: number, archive: string): ZipEntry[] => {
  const d = view(bytes);
  const decoder = new TextDecoder("utf-8", { fatal: false });
  const shift = dir.shift ?? 0;
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let n = 0; n < dir.entries; n++) {
    const where = dir.at + p;
    if ((p + 46 > bytes.length || d.getUint32(p, true) !== SIG.central) && n === 0 && shift > 0)
      throw zipError(
        archive,
        where,
        `its central directory ends ${shift} bytes before its end record, and none starts ${shift} bytes after ` +
          "where that record says either (as bytes put before the archive would move it): the end record is forged or the " +
          "archive corrupt; repair it (zip -FF) or extract and zip it again",
      );
    if (p + 46 > bytes.length || d.getUint32(p, true) !== SIG.central)
      throw zipError(archive, where, `central directory entry ${n + 1} of ${dir.entries} is missing or corrupt`);
    const flags = d.getUint16(p + 8, true);
    const methodCode = d.getUint16(p + 10, true);
    const crc32 = d.getUint32(p + 16, true);
    let compressedSize = d.getUint32(p + 20, true);
    let size = d.getUint32(p + 24, true);
    const nameBytes = d.getUint16(p + 28, true);
    const extraBytes = d.getUint16(p + 30, true);
    const commentBytes = d.getUint16(p + 32, true);
    let at = d.getUint32(p + 42, true);
    const next = p + 46 + nameBytes + extraBytes + commentBytes;
    if (next > bytes.length) throw zipError(archive, where, `central directory entry ${n + 1} runs past the directory`);
    const name = decoder.decode(bytes.subarray(p + 46, p + 46 + nameBytes));
    // zip64: the 32-bit fields at their maximum are in the extra field's 0x0001 record, in this order.
    if (size === 0xffffffff || compressedSize === 0xffffffff || at === 0xffffffff) {
      let e = p + 46 + nameBytes;
      const end = e + extraBytes;
      let found = false;
      while (e + 4 <= end) {
        const id = d.getUint16(e, true);
        const len = d.getUint16(e + 2, true);
        if (id === 1) {
          let f = e + 4;
          const take = (): number => {
            if (f + 8 > Math.min(e + 4 + len, end))
              throw zipError(archive, where, `entry ${JSON.stringify(name)}: its zip64 field is too short`);
            const v = u64(d, f, archive, where);
            f += 8;
            return v;
          };
          if (size === 0xffffffff) size = take();
          if (compressedSize === 0xffffffff) compressedSize = take();
          if (at === 0xffffffff) at = take();
          found = true;
          break;
        }
        e += 4 + len;
      }
      if (!found) throw zipError(archive, where, `entry ${JSON.stringify(name)} needs a zip64 field and has none`);
    }
    // Offsets the archive records are off by the bytes put before it (zipfile's `concat`).
    at += shift;
    p = next;
    const unsafe = unsafeName(name);
    if (unsafe) throw zipError(archive, where, `entry ${JSON.stringify(name)} has ${unsafe}; the archive is refused`);
    if (isMetadata(name)) continue;
    if (flags & 1) throw zipError(archive, where, `entry ${JSON.stringify(name)} is encrypted; decrypt the archive first`);
    const method = METHODS[methodCode];
    if (!method) {
      const known = METHOD_NAMES[methodCode];
      throw zipError(
        archive,
        where,
        `entry ${JSON.stringify(name)} is compressed with method ${methodCode}${known ? ` (${known})` : ""}; ` +
          "entries are read when stored or deflated (zip -Z deflate)",
      );
    }
    if (method === "deflate" && compressedSize === 0 && size > 0)
      throw zipError(archive, where, `entry ${JSON.stringify(name)} declares ${size} bytes from no compressed data`);
    if (method === "stored" && size !== compressedSize)
      throw zipError(archive, where, `entry ${JSON.stringify(name)} is stored, yet its sizes differ (${compressedSize} and ${size})`);
    if (at + LOCAL_HEADER_BYTES + nameBytes + compressedSize > dir.at)
      throw zipError(archive, at, `entry ${JSON.stringify(name)} runs past the start of the central directory (truncated?)`);
    entries.push({ name, method, crc32, compressedSize, size, at, nameBytes, end: dir.at });
  }
  // A writer without zip64 stores counts past 65,535 modulo 65,536: the entries past the count
  // would be left out without a word.
  if (p + 4 <= bytes.length && d.getUint32(p, true) === SIG.central)
    throw zipError(
      archive,
      dir.at + p,
      `the end record counts ${dir.entries} ${dir.entries === 1 ? "entry" : "entries"}, but the central directory holds more ` +
        "(written without zip64 past 65,535 entries?): rewrite the archive (zip -r, or 7z a -tzip)",
    );
  if (archiveSize < dir.at + dir.bytes) throw zipError(archive, archiveSize, "the archive ends inside its central directory");
  return boundedEntries(entries, archive, dir.at);
};

/**
 * Two entries whose bytes overlap are how a small archive claims petabytes: refused here as the
 * directory sees them, and each entry's `end` is where the next one starts, so that its read
 * refuses data that, past a long local extra field, would reach into the next (zipMember.ts).
 * Returns the entries in directory order.
 */
const boundedEntries = (entries: readonly ZipEntry[], archive: string, directoryAt: number): ZipEntry[] => {
  const sorted = [...entries].sort((a, b) => a.at - b.at);
  const ends = new Map<ZipEntry, number>();
  for (let i = 0; i < sorted.length; i++) {
    const cur = sorted[i]!;
    const next = sorted[i + 1];
    if (next && cur.at + LOCAL_HEADER_BYTES + cur.nameBytes + cur.compressedSize > next.at) {
      throw zipError(
        archive,
        next.at,
        `entries ${JSON.stringify(cur.name)} and ${JSON.stringify(next.name)} share bytes ` +
          "(an overlapping-entry zip bomb?); the archive is refused",
      );
    }
    ends.set(cur, next ? next.at : directoryAt);
  }
  return entries.map((e) => ({ ...e, end: ends.get(e)! }));
};

/**
 * The local header at the start of `head` (an entry's first bytes, its name included): where its
 * data starts, past its name and extra field. Errors name the archive and an archive offset.
 */
export const localDataOffset = (
  head: Uint8Array,
  entry: Pick<ZipEntry, "nameBytes" | "at"> & { readonly name: string | undefined },
  archive: string,
): number => {
  const d = view(head);
  const which = entry.name === undefined ? "an entry" : `entry ${JSON.stringify(entry.name)}`;
  if (head.length < LOCAL_HEADER_BYTES || d.getUint32(0, true) !== SIG.local)
    throw zipError(archive, entry.at, `${which}: no local header where the directory says`);
  const nameBytes = d.getUint16(26, true);
  const local =
    head.length >= LOCAL_HEADER_BYTES + nameBytes ? head.subarray(LOCAL_HEADER_BYTES, LOCAL_HEADER_BYTES + nameBytes) : undefined;
  // A name to check (jobs planned by 0.1 carry none) must be the one the directory gave.
  const named = entry.name === undefined || !local || new TextDecoder("utf-8", { fatal: false }).decode(local) === entry.name;
  if (nameBytes !== entry.nameBytes || !named) throw zipError(archive, entry.at, `${which}: its local header names another file`);
  return LOCAL_HEADER_BYTES + nameBytes + d.getUint16(28, true);
};

/** The archive's name in an entry's (`archive.zip!/dir/file.csv`, see entryName). */
export const archiveOfEntry = (name: string, entry: string): string => name.slice(0, name.length - entry.length - 2);

/** How users name an entry: the archive's name, `!/`, the entry's path (as a jar URL does). */
export const entryName = (archive: string, entry: string): string => `${archive}!/${entry}`;
