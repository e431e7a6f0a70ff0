/** Where a thread's entry file is, beside the module that starts it, from sources, dist/ or a bundle. */
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CloudmillError, ErrorCode } from "../core/errors.js";

/**
 * `name`'s compiled file beside `starter` (an `import.meta.url`): from sources (vitest, tsx) the
 * build in dist/; in the worker image's bundle (worker/main.mjs), the bundle `name.mjs` beside it.
 */
export const threadEntry = (starter: string, name: string): string => {
  const here = fileURLToPath(starter);
  if (here.endsWith(".mjs")) return path.join(path.dirname(here), `${name}.mjs`);
  const beside = path.join(path.dirname(here), `${name}.js`);
  if (!here.endsWith(".ts")) return beside;
  const compiled = beside.replace(/([\\/])lib([\\/])sandbox([\\/])/, "$1dist$1lib$2sandbox$3");
  if (!existsSync(compiled)) throw new CloudmillError(ErrorCode.INTERNAL, `thread not built: ${compiled} (npm run build)`);
  return compiled;
};
