/**
 * The worker's watchdog over op code on its main thread: a guarded call that runs past its
 * task's limit ends the process (SIGKILL) after one line on standard error naming the task;
 * calls that each return in time keep it alive however long they take together, and so does a
 * long wait outside any guarded call. Each case runs in a process of its own.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { requireBuild, ROOT } from "../helpers/devCloud.js";

const watchdog = pathToFileURL(path.join(ROOT, "dist/lib/sandbox/MainThreadWatchdog.js")).href;

/** Runs `body` with `dog` a watchdog of a 1 s default limit (and `options`); its exit and standard error. */
const inProcess = (
  body: string,
  options = "",
): Promise<{ signal: NodeJS.Signals | null; code: number | null; stderr: string; stdout: string }> => {
  requireBuild();
  const script = `import { MainThreadWatchdog } from ${JSON.stringify(watchdog)};
const dog = new MainThreadWatchdog({ defaultLimitSeconds: 1, pollMs: 50, ${options} });
const spin = (ms) => { const end = Date.now() + ms; while (Date.now() < end) {} };
${body}
await dog.close();
console.log("alive");`;
  return new Promise((resolve) => {
    // A watchdog that never fires must not leave its process spinning: it ends at 20 s (SIGTERM).
    const child = execFile(process.execPath, ["--input-type=module", "-e", script], { timeout: 20_000 }, (_err, stdout, stderr) =>
      resolve({ signal: child.signalCode, code: child.exitCode, stderr, stdout }),
    );
  });
};

describe("the main thread's watchdog", () => {
  it("ends the process when one guarded call runs past its task's limit, naming the task", async () => {
    const r = await inProcess(`const task = dog.task("merge task 4 of level 2 of job j-1", 1);
task.run(() => { for (;;) {} });`);
    expect(r.signal).toBe("SIGKILL");
    expect(r.stdout).toBe("");
    const line = JSON.parse(r.stderr.trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ level: "ERROR", task: "merge task 4 of level 2 of job j-1" });
    expect(String(line.message)).toMatch(/^op code ran on the worker's main thread past its task's limit of 1s/);
    expect(line.stuckSeconds).toBeGreaterThanOrEqual(1);
  }, 30_000);

  it("takes a task's own limit over its default: a 2 s call lives under a limit of 3 s", async () => {
    const r = await inProcess(`dog.task("slow but in time", 3).run(() => spin(2000));`);
    expect(r).toMatchObject({ signal: null, code: 0, stdout: "alive\n", stderr: "" });
  }, 30_000);

  it("ends one call past mostSeconds, under a longer task limit: the worker's heartbeats would stall past it", async () => {
    const r = await inProcess(`dog.task("partition 2's reduce task of job j-2", 900).run(() => { for (;;) {} });`, "mostSeconds: 1");
    expect(r.signal).toBe("SIGKILL");
    const line = JSON.parse(r.stderr.trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ level: "ERROR", task: "partition 2's reduce task of job j-2" });
    expect(String(line.message)).toMatch(
      /^op code ran on the worker's main thread past the 1s one call there may take before the worker's task messages return/,
    );
    // A call within both limits lives.
    const ok = await inProcess(`dog.task("in time", 900).run(() => spin(300));`, "mostSeconds: 2");
    expect(ok).toMatchObject({ signal: null, code: 0, stdout: "alive\n", stderr: "" });
  }, 30_000);

  it("lets many calls that each return in time run for longer than the limit together, and idles unharmed", async () => {
    const r = await inProcess(`const task = dog.task("reduce task", 1);
for (let i = 0; i < 30; i++) task.run(() => spin(100));
await new Promise((r) => setTimeout(r, 1500));
spin(1500);
task.close();`);
    expect(r).toMatchObject({ signal: null, code: 0, stdout: "alive\n", stderr: "" });
  }, 30_000);
});
