/** The CLI's streams, injected so command tests can capture them. */
export interface CliIO {
  readonly stdout: { write(s: string): unknown };
  readonly stderr: { write(s: string): unknown; isTTY?: boolean; columns?: number };
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Aborted on Ctrl-C. */
  readonly signal?: AbortSignal;
}

/**
 * The process's streams. stdout is the CLI's alone (`run > result.json`): whatever else writes
 * there (a lab op's console.log at import or in a task thread, whose output Node pipes to
 * process.stdout) goes to stderr instead.
 */
export const processIO = (signal?: AbortSignal): CliIO => {
  const out = process.stdout;
  const write = out.write.bind(out);
  out.write = process.stderr.write.bind(process.stderr) as typeof out.write;
  // A pipe into stdout that met a full buffer waits for stdout's drain; the buffer was stderr's.
  process.stderr.on("drain", () => out.emit("drain"));
  return {
    stdout: { write },
    stderr: process.stderr,
    env: process.env,
    ...(signal ? { signal } : {}),
  };
};
