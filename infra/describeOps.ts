/**
 * `node describeOps.mjs '["/abs/ops/0-index.mjs", ...]'`: imports the op bundles a deploy ships
 * (the very files the roles load) and prints their listing, `{ ops: [{ name, digest, ... }] }`,
 * as the roles would publish it. The construct runs it at synth in a child process (bundled, see
 * bundling.ts), so the digests are computed from the deployed bytes. A module that fails to load
 * is reported on one line on stderr, with exit code 1.
 */
import { opsRegistry } from "../lib/core/ops/opModules.js";
import { listingOf } from "../lib/core/ops/registryListing.js";

try {
  const modules = JSON.parse(process.argv[2] ?? "[]") as string[];
  process.stdout.write(JSON.stringify(listingOf(await opsRegistry(modules))));
} catch (err) {
  process.stderr.write(`${String((err as Error).message ?? err).split("\n")[0]}\n`);
  process.exitCode = 1;
}
