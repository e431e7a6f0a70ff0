/**
 * A lab's task module for the tests, as source text: each test writes it to a file, since item
 * threads load modules by path. Its tasks misbehave on purpose on items that ask them to.
 */
import path from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT } from "./devCloud.js";

const DEFINE_TASK = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineTask.js")).href;

/**
 * `affine`: { n } → 3n + 1; throws on { fail: true }, and { throws: "undefined" | "object" } throws that; { hang: "sync" | "async" } never returns;
 * { mark: name } first makes a file of that name in its scratch directory; { say: s } logs "said s" (info) and "shouted s" (error); { hog: true } allocates without end; { exit: true } exits its thread; { big: k } returns a string
 * of k "x"; { sleep: ms } answers after ms; { orphan: true } leaves a promise rejected; { child: s }
 * starts \`sleep s\` with ctx.signal, marks its scratch directory with a file named s, and never returns; { give: "map" | "nan" | "set" | "hole" } returns a value JSON would change; { put: name } stores "item <n>" as an object; { wait: true } logs "waiting" then
 * resolves with whether its signal aborted, once it has.
 */
export const TASKS_MODULE = `import { defineTask } from ${JSON.stringify(DEFINE_TASK)};
export const affine = defineTask({
  name: "affine",
  timeoutSeconds: 3,
  memoryMiB: 64,
  run: async (item, ctx) => {
    if (item.mark) process.getBuiltinModule("node:fs").writeFileSync(ctx.scratch + "/" + item.mark, "");
    if (item.say) { ctx.log.info("said " + item.say); ctx.log.error("shouted " + item.say); }
    if (item.fail) throw new Error("refused item " + item.n);
    if (item.throws === "undefined") throw undefined;
    if (item.throws === "object") throw { code: 42, why: "a lab's own error object" };
    if (item.throws === "bare") throw Object.assign(Object.create(null), { why: "no prototype" });
    if (item.hang === "sync") for (;;) {}
    if (item.hang === "async") await new Promise(() => {});
    if (item.hog) { const kept = []; for (;;) kept.push(new Array(100000).fill(item.n)); }
    if (item.exit) process.exit(3);
    if (item.big) return "x".repeat(item.big);
    if (item.orphan) { Promise.reject(new Error("left behind by item " + item.n)); return 3 * item.n + 1; }
    if (item.child) {
      // Not import(): a test runner rewrites that, which would change the code's digest between processes.
      const { spawn } = process.getBuiltinModule("node:child_process");
      const { writeFileSync } = process.getBuiltinModule("node:fs");
      writeFileSync(ctx.scratch + "/" + item.child, "");
      spawn("sleep", [item.child], { signal: ctx.signal }).on("error", () => {});
      await new Promise(() => {});
    }
    if (item.sleep) { await new Promise((resolve) => setTimeout(resolve, item.sleep)); return 3 * item.n + 1; }
    if (item.give === "map") return new Map([["a", 1]]);
    if (item.give === "nan") return { x: NaN };
    if (item.give === "set") return { seen: new Set([1, 2]) };
    if (item.give === "hole") return [1, undefined, 3];
    if (item.put) return { stored: await ctx.put(item.put, "item " + item.n) };
    if (item.wait) {
      ctx.log.info("waiting");
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
      return { aborted: ctx.signal.aborted };
    }
    return 3 * item.n + 1;
  },
});
`;
