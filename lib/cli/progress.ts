/** Progress on stderr, one way for every command: a line redrawn in place on a TTY, plain lines otherwise. */
import type { Progress } from "../local/localEngine.js";
import type { CliIO } from "./io.js";

export interface StatusLine {
  /**
   * Shows `line`. `final`: the last one, always shown. `key`: plain output skips a line whose
   * key equals the last shown one (a job whose progress did not change).
   */
  show(line: string, final: boolean, key?: string): void;
  /** Ends a redrawn line, so what follows starts on a fresh one. */
  done(): void;
}

export interface StatusLineOptions {
  readonly enabled: boolean;
  /** TTY: redraw at most this often (the final line always). Default 0. */
  readonly redrawMs?: number;
  /** Plain output: the first line only after one interval, so a quick run prints none. Default false. */
  readonly quietStart?: boolean;
}

/** Plain output: at most a line this often (and the final one). */
const PLAIN_EVERY_MS = 2000;

export const statusLine = (io: CliIO, options: StatusLineOptions): StatusLine => {
  if (!options.enabled) return { show: () => {}, done: () => {} };
  const tty = io.stderr.isTTY === true;
  let last = !tty && options.quietStart ? Date.now() : 0;
  let lastKey: string | undefined;
  let drawn = false;
  return {
    show(line, final, key) {
      const now = Date.now();
      if (tty) {
        if (!final && now - last < (options.redrawMs ?? 0)) return;
        io.stderr.write(`\r${line}\x1b[K`);
        drawn = true;
      } else {
        if (key !== undefined && key === lastKey) return;
        if (!final && now - last < PLAIN_EVERY_MS) return;
        io.stderr.write(`${line}\n`);
        lastKey = key;
      }
      last = now;
    },
    done() {
      if (drawn) io.stderr.write("\n");
      drawn = false;
    },
  };
};

/** `[#####-----]`: `fraction` of `width` filled. */
export const bar = (fraction: number, width: number): string => {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
};

/** Bar width that leaves `reserved` columns of the terminal for the rest of the line. */
export const barWidth = (io: CliIO, reserved: number): number => Math.max(10, Math.min(40, (io.stderr.columns ?? 80) - reserved));

/** Bytes as decimal megabytes, one decimal: `12.3`. */
export const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);

const eta = (p: Progress): string => {
  if (p.bytesDone === 0) return "?";
  const s = ((p.bytes - p.bytesDone) * p.elapsedMs) / p.bytesDone / 1000;
  return s < 60 ? `${Math.ceil(s)}s` : `${Math.floor(s / 60)}m${String(Math.ceil(s % 60)).padStart(2, "0")}s`;
};

export const describeProgress = (p: Progress): string => {
  const rate = p.elapsedMs > 0 ? p.bytesDone / 1e6 / (p.elapsedMs / 1000) : 0;
  return `${p.chunksDone}/${p.chunks} chunks  ${mb(p.bytesDone)}/${mb(p.bytes)} MB  ${rate.toFixed(1)} MB/s  ETA ${eta(p)}`;
};

export interface ProgressView {
  update(p: Progress): void;
  done(): void;
}

/** A local run's progress: a bar on a TTY, a plain line every few seconds otherwise. */
export const progressView = (io: CliIO, enabled = true): ProgressView => {
  const out = statusLine(io, { enabled, redrawMs: 100, quietStart: true });
  const tty = io.stderr.isTTY === true;
  return {
    update(p) {
      const text = describeProgress(p);
      out.show(
        tty ? `${bar(p.chunksDone / Math.max(1, p.chunks), barWidth(io, 60))} ${text}` : `progress: ${text}`,
        p.chunksDone === p.chunks,
      );
    },
    done: () => out.done(),
  };
};
