/** Runs the CLI in this process, as `cloudmill <args>` would, capturing what it writes. */
import type { CliIO } from "../../lib/cli/io.js";
import { runCli } from "../../lib/cli/main.js";

export const cli = async (
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): Promise<{ code: number; stdout: string; stderr: string }> => {
  let stdout = "";
  let stderr = "";
  const io: CliIO = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
};
