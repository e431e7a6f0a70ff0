/** The CLI's streams, injected so command tests can capture them. */
export interface CliIO {
  readonly stdout: { write(s: string): unknown };
  readonly stderr: { write(s: string): unknown; isTTY?: boolean; columns?: number };
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Aborted on Ctrl-C. */
  readonly signal?: AbortSignal;
}

export const processIO = (signal?: AbortSignal): CliIO => ({
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  ...(signal ? { signal } : {}),
});
