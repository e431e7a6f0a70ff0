/** `cloudmill result <job>`: the result JSON of a job that has ended; its error if it failed. */
import { constants, fstatSync, writeSync } from "node:fs";
import { access, lstat, mkdtemp, readlink, realpath, rmdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { Command } from "commander";
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../../core/errors.js";
import { writeFileAtomically } from "../../fs/atomicFile.js";
import { fileFailure } from "../../fs/fsErrors.js";
import { parseFlags, usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import type { CliIO } from "../io.js";
import type { JobStatus } from "../../sdk/types.js";

/** How a file a command was told to write (--out, --report, --html) is written. */
type Target =
  | { readonly how: "stream"; readonly fd: 1 | 2 }
  | { readonly how: "atomic"; readonly file: string }
  | { readonly how: "into"; readonly file: string };

/** Which of this process's stdout and stderr `file` is (the same device and inode), if either. */
const standardStream = async (file: string): Promise<1 | 2 | undefined> => {
  const found = await stat(file).catch(() => undefined);
  if (!found) return undefined;
  for (const fd of [1, 2] as const) {
    const open = (() => {
      try {
        return fstatSync(fd);
      } catch {
        return undefined;
      }
    })();
    if (open && open.dev === found.dev && open.ino === found.ino) return fd;
  }
  return undefined;
};

/**
 * Decides how `file` is written. This process's own stdout or stderr (/dev/stdout with stdout
 * sent to a file, `>> log.txt` or `( ...; cloudmill ...; ) > all.txt`) is written through the
 * stream: opened again, it would be truncated and written from offset 0, over what the shell
 * or the command before had written there. A plain file, or a new one, is written atomically:
 * beside it, then renamed over it; a link to a plain file, so at the file it leads to, and the
 * link is kept. Anything else is written into (opened for writing, truncated): a device, a pipe,
 * and a link to one of them or to nothing yet, since a rename would replace the link itself.
 */
const targetOf = async (file: string): Promise<Target> => {
  const entry = await lstat(file).catch(() => undefined);
  if (!entry) return { how: "atomic", file };
  const fd = await standardStream(file);
  if (fd !== undefined) return { how: "stream", fd };
  if (entry.isFile()) return { how: "atomic", file };
  if (entry.isSymbolicLink() && (await stat(file).catch(() => undefined))?.isFile()) return { how: "atomic", file: await realpath(file) };
  return { how: "into", file };
};

/** The streams writeOutputFile writes this process's stdout and stderr through: the CLI's own. */
export type OutputStreams = Pick<CliIO, "stdout" | "stderr">;

/**
 * Writes a file a command was told to write (--out, --report, --html), as targetOf decides.
 * Without `io`, this process's stdout or stderr is written at its file descriptor when it is a
 * plain file (its offset and O_APPEND shared with the shell's), and opened anew otherwise.
 */
export const writeOutputFile = async (file: string, text: string, io?: OutputStreams): Promise<void> => {
  try {
    const target = await targetOf(file);
    if (target.how === "stream") {
      if (io) (target.fd === 1 ? io.stdout : io.stderr).write(text);
      else if (fstatSync(target.fd).isFile()) writeSync(target.fd, text);
      else await writeFile(file, text);
    } else if (target.how === "atomic") await writeFileAtomically(target.file, text);
    else await writeFile(target.file, text);
  } catch (err) {
    throw fileFailure(`cannot write ${file}`, err);
  }
};

/** The result as pretty JSON on stdout, or into a file (as writeOutputFile writes it). */
export const writeResult = async (io: CliIO, result: unknown, out?: string): Promise<void> => {
  const text = `${JSON.stringify(result, null, 2)}\n`;
  if (out) await writeOutputFile(out, text, io);
  else io.stdout.write(text);
};

/**
 * Fails now if a file the command writes at its end (--out, --report) could not be written
 * there, rather than after the job has run (and a keyed job has replaced its --out-dir parts).
 */
export const checkWritableFile = async (flag: string, file: string | undefined): Promise<void> => {
  if (file === undefined) return;
  const resolved = path.resolve(file);
  const entry = await lstat(resolved).catch(() => undefined);
  const found = entry?.isSymbolicLink() ? await stat(resolved).catch(() => undefined) : entry;
  if (found?.isDirectory()) throw new CloudmillError(ErrorCode.INVALID_SPEC, `${flag} ${file}: is a directory; name a file in it`);
  const target = await targetOf(resolved);
  // This process's stdout or stderr: written through the stream, which is open already.
  if (target.how === "stream") return;
  // What is written into, not replaced (a device, a pipe, a link to one): it is what must take writes, not its folder.
  if (target.how === "into" && found) {
    await access(resolved, constants.W_OK).catch((err: unknown) => {
      throw fileFailure(`${flag} ${file}: cannot write it`, err);
    });
    return;
  }
  // Written beside the file (the one a link leads to) and renamed; through a link to nothing yet, made in the folder it names.
  const folder = path.dirname(target.how === "atomic" ? target.file : path.resolve(path.dirname(resolved), await readlink(resolved)));
  await access(folder, constants.W_OK).catch(() => {
    throw new CloudmillError(ErrorCode.ENVIRONMENT, `${flag} ${file}: cannot write in ${folder} (no such folder, or not writable)`);
  });
};

/**
 * Fails now, as checkWritableFile does, if the parts could not go to --out-dir: the nearest
 * folder on its path that exists must take a new folder, tried by making one there and removing
 * it at once (access() would not do: it lets root write anywhere, and /proc refuses root a
 * folder all the same). A file on the path is left to the engine, which names it.
 */
export const checkWritableDir = async (flag: string, dir: string | undefined): Promise<void> => {
  if (dir === undefined) return;
  let folder = path.resolve(dir);
  let found = await stat(folder).catch(() => undefined);
  while (!found && path.dirname(folder) !== folder) {
    folder = path.dirname(folder);
    found = await stat(folder).catch(() => undefined);
  }
  if (!found?.isDirectory()) return;
  const probe = await mkdtemp(path.join(folder, ".cloudmill-")).catch(() => undefined);
  if (probe === undefined) throw new CloudmillError(ErrorCode.ENVIRONMENT, `${flag} ${dir}: cannot write in ${folder} (not writable)`);
  await rmdir(probe);
};

const ResultFlags = z.object({ out: z.string().optional() });

export const resultCommand = (io: CliIO): Command =>
  withCloudOptions(
    new Command("result")
      .description("print a finished job's result JSON (a failed job's error goes to stderr, with its exit code)")
      .argument("<job>", "the job id")
      .option("-o, --out <file>", "write the result JSON here instead of stdout"),
  ).action(async (jobId: string, raw: Record<string, unknown>) => {
    const flags = parseFlags(ResultFlags, raw);
    await usingCloudmill(raw, io, async (mill) => {
      const future = mill.job(jobId);
      const status = await future.status();
      // An ended job settles result() at once: one more GET for the result, none for a failure.
      if (status.state === "pending" || status.state === "running") throw notEnded(status);
      await writeResult(io, await future.result(), flags.out);
    });
  });

/** Shown when a job has not ended. */
export const notEnded = (s: JobStatus): CloudmillError =>
  new CloudmillError(
    ErrorCode.NOT_FINISHED,
    `job ${s.jobId} is ${s.state} (${s.done}/${s.chunks} chunks): \`cloudmill wait ${s.jobId}\` waits for it`,
    { jobId: s.jobId },
  );
