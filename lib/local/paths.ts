/** Where the package's compiled files are, from source (vitest) or from dist alike. */
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const findRoot = (): string => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, "package.json"))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error("cloudmill: package.json not found above lib/");
    dir = up;
  }
  return dir;
};

export const packageRoot: string = findRoot();

/** A compiled file by its path from the package root, e.g. `worker/main.js` → dist/worker/main.js. */
export const compiledFile = (relative: string): string => path.join(packageRoot, "dist", relative);
