import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Most files wait on emulated queues, child processes and timers, not the CPU: two at once on
    // two cores take about half the wall time of one (vitest's default is a core less than there
    // are). Capped so that a big machine does not start dozens of dev clouds at once.
    maxWorkers: Math.min(4, Math.max(2, availableParallelism())),
  },
});
