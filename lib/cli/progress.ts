/** Progress on stderr: a redrawn bar on a TTY, a plain line every few seconds otherwise. */
import type { Progress } from "../local/localEngine.js";
import type { CliIO } from "./io.js";

const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);

const eta = (p: Progress): string => {
  if (p.bytesDone === 0) return "?";
  const s = ((p.bytes - p.bytesDone) * p.elapsedMs) / p.bytesDone / 1000;
  return s < 60 ? `${Math.ceil(s)}s` : `${Math.floor(s / 60)}m${String(Math.ceil(s % 60)).padStart(2, "0")}s`;
};

export const describeProgress = (p: Progress): string => {
  const rate = p.elapsedMs > 0 ? (p.bytesDone / 1e6) / (p.elapsedMs / 1000) : 0;
  return `${p.chunksDone}/${p.chunks} chunks  ${mb(p.bytesDone)}/${mb(p.bytes)} MB  ${rate.toFixed(1)} MB/s  ETA ${eta(p)}`;
};

export interface ProgressView {
  update(p: Progress): void;
  done(): void;
}

export const progressView = (io: CliIO, enabled = true): ProgressView => {
  if (!enabled) return { update: () => {}, done: () => {} };
  const tty = io.stderr.isTTY === true;
  // Plain lines start after a first interval, so a quick run or failure prints none.
  let last = tty ? 0 : Date.now();
  let drawn = false;
  return {
    update(p) {
      const now = Date.now();
      const final = p.chunksDone === p.chunks;
      if (tty) {
        if (!final && now - last < 100) return;
        last = now;
        const width = Math.max(10, Math.min(40, (io.stderr.columns ?? 80) - 60));
        const filled = Math.round((p.chunksDone / Math.max(1, p.chunks)) * width);
        io.stderr.write(`\r[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${describeProgress(p)}\x1b[K`);
        drawn = true;
      } else if (final || now - last >= 2000) {
        last = now;
        io.stderr.write(`progress: ${describeProgress(p)}\n`);
      }
    },
    done() {
      if (drawn) io.stderr.write("\n");
    },
  };
};
