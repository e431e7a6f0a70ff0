/**
 * `npm run build`'s second step (after tsc): the prebuilt bundles the package ships in
 * dist/assets/, one per role plus the synth-time ops describer, and the CLI's own (with its
 * threads), built from the TypeScript sources.
 * An installed cloudmill stages these at synth; it has no sources to build from.
 */
import { mkdirSync, rmSync } from "node:fs";
import * as path from "node:path";
import { BUNDLES, CLI_BUNDLE, PREBUILT_DIR, bundleCliFromSources, bundleFromSources, type BundleName } from "./bundling.js";

rmSync(PREBUILT_DIR, { recursive: true, force: true });
for (const name of Object.keys(BUNDLES) as BundleName[]) {
  const outfile = path.join(PREBUILT_DIR, BUNDLES[name].file);
  mkdirSync(path.dirname(outfile), { recursive: true });
  bundleFromSources(name, outfile);
}
bundleCliFromSources(path.join(PREBUILT_DIR, CLI_BUNDLE.dir));
