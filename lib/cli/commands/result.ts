/** `cloudmill result <job>`: the result JSON of a job that has ended; its error if it failed. */
import { constants } from "node:fs";
import { access, lstat, mkdtemp, readlink, rmdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { Command } from "commander";
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../../core/errors.js";
import { writeFileAtomically } from "../../fs/atomicFile.js";
import { fileFailure } from "../../fs/fsErrors.js";
import { parseFlags, usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import type { CliIO } from "../io.js";
import type { JobStatus } from "../../sdk/types.js";

/**
 * Writes a file a command was told to write (--out, --report, --html). A plain file, or a new
 * one, is written atomically: beside it, then renamed over it. Anything else is written into
 * (opened for writing, truncated): a device or a pipe, and a symbolic link whatever it points
 * to, since a rename would replace the link itself. /dev/stdout is a link to /proc/self/fd/1,
 * which with stdout sent to a file (`> res.json`) leads to a plain file: renamed over, the link
 * became that file, and the result never reached the shell's.
 */
export const writeOutputFile = async (file: string, text: string): Promise<void> => {
  try {
    const found = await lstat(file).catch(() => undefined);
    if (found && !found.isFile()) await writeFile(file, text);
    else await writeFileAtomically(file, text);
  } catch (err) {
    throw fileFailure(`cannot write ${file}`, err);
  }
};

/** The result as pretty JSON on stdout, or into a file (as writeOutputFile writes it). */
export const writeResult = async (io: CliIO, result: unknown, out?: string): Promise<void> => {
  const text = `${JSON.stringify(result, null, 2)}\n`;
  if (out) await writeOutputFile(out, text);
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
  // What is written into, not replaced (a link, a device, a pipe): it is what must take writes, not its folder.
  if (entry && !entry.isFile() && found) {
    await access(resolved, constants.W_OK).catch((err: unknown) => {
      throw fileFailure(`${flag} ${file}: cannot write it`, err);
    });
    return;
  }
  // A link to nothing yet: writing through it makes what it names, in that folder.
  const folder = path.dirname(entry?.isSymbolicLink() ? path.resolve(path.dirname(resolved), await readlink(resolved)) : resolved);
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
