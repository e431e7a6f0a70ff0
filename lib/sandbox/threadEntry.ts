/** Where a thread's entry file is, beside the module that starts it, from sources, dist/ or a bundle. */
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CloudmillError, ErrorCode } from "../core/errors.js";

/**
 * `name`'s compiled file beside `starter` (an `import.meta.url`). In a bundle (the CLI's
 * dist/assets/cli/, the worker image's worker/main.mjs) it is the bundle `name.mjs` beside it;
 * from sources (vitest, tsx) the build in dist/, so that a thread never runs TypeScript.
 */
export const threadEntry = (starter: string, name: string): string => {
  const here = fileURLToPath(starter);
  if (here.endsWith(".mjs")) return path.join(path.dirname(here), `${name}.mjs`);
  const beside = path.join(path.dirname(here), `${name}.js`);
  if (!here.endsWith(".ts")) return beside;
  const lib = beside.lastIndexOf(`${path.sep}lib${path.sep}`);
  const compiled = `${beside.slice(0, lib)}${path.sep}dist${beside.slice(lib)}`;
  if (lib < 0 || !existsSync(compiled)) throw new CloudmillError(ErrorCode.INTERNAL, `thread not built: ${compiled} (npm run build)`);
  return compiled;
};
