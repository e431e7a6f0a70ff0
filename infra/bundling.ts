/**
 * Every esbuild call cloudmill makes, in one place: the roles' bundles (at `npm run build` into
 * dist/assets/, or at synth when the construct runs from its TypeScript sources) and a lab's op
 * modules (at synth). All synchronous (`buildSync`): a construct's constructor cannot await.
 * esbuild is an optional peer dependency, loaded only when something has to be bundled.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import type { BuildFailure, BuildOptions, Message } from "esbuild";
import { CloudmillConfigError } from "./props.js";

/** ESM bundles still meet CommonJS dependencies that call `require`. */
export const ESM_REQUIRE_BANNER = "import { createRequire } from 'module'; const require = createRequire(import.meta.url);";

const HERE = path.dirname(fileURLToPath(import.meta.url));

/**
 * True when this module runs from its TypeScript sources (this repository: `npx tsx infra/app.ts`,
 * vitest), false when it runs compiled (dist/infra/, as in an installed package).
 */
export const FROM_SOURCES = import.meta.url.endsWith(".ts");

/** The package root: above infra/ (sources) or above dist/infra/ (compiled). */
export const PACKAGE_ROOT = FROM_SOURCES ? path.resolve(HERE, "..") : path.resolve(HERE, "../..");

/** The prebuilt bundles `npm run build` writes and the package ships. */
export const PREBUILT_DIR = path.join(PACKAGE_ROOT, "dist", "assets");

/** Each bundle: its entry (from the package root, a TypeScript source) and its file under dist/assets/. */
export const BUNDLES = {
  splitter: { entry: "functions/splitter.ts", file: "splitter/index.mjs" },
  reducer: { entry: "functions/reducer.ts", file: "reducer/index.mjs" },
  deadLetters: { entry: "functions/deadLetters.ts", file: "deadLetters/index.mjs" },
  worker: { entry: "worker/main.ts", file: "worker/main.mjs" },
  /** The worker's item threads (lib/sandbox), started from the file beside the worker bundle. */
  itemThread: { entry: "lib/sandbox/itemThread.ts", file: "worker/itemThread.mjs" },
  /** The worker's op mapper threads (lib/sandbox), beside the worker bundle too. */
  mapperThread: { entry: "lib/sandbox/mapperThread.ts", file: "worker/mapperThread.mjs" },
  /** Imports op bundles and prints their listing (infra/describeOps.ts); run at synth, never deployed. */
  describeOps: { entry: "infra/describeOps.ts", file: "describeOps/describeOps.mjs" },
} as const;
export type BundleName = keyof typeof BUNDLES;

/** How every cloudmill bundle is built: one ESM file for Node.js 22, every dependency (the AWS SDK too) inside. */
const COMMON: BuildOptions = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  banner: { js: ESM_REQUIRE_BANNER },
  mainFields: ["module", "main"],
  minify: false,
  sourcemap: false,
  legalComments: "none",
  logLevel: "silent",
  write: true,
};

type Esbuild = typeof import("esbuild");
let esbuild: Esbuild | undefined;

/** esbuild, or one line saying how to get it. */
const loadEsbuild = (): Esbuild => {
  if (esbuild === undefined) {
    try {
      esbuild = createRequire(import.meta.url)("esbuild") as Esbuild;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "MODULE_NOT_FOUND") throw err;
      throw new CloudmillConfigError("ops need esbuild: npm install -D esbuild");
    }
  }
  return esbuild;
};

/** esbuild's message on one line: `text (file:line:column)`. */
const oneLine = (m: Message): string => {
  const where = m.location ? ` (${m.location.file}:${m.location.line}:${m.location.column})` : "";
  return `${m.text}${where}`.replace(/\s*\n\s*/g, " ");
};

/** The first error of a failed build, on one line. */
const firstError = (err: unknown): string => {
  const first = (err as Partial<BuildFailure>).errors?.[0];
  return first ? oneLine(first) : String((err as Error).message ?? err).split("\n")[0]!;
};

/** Bundles one of cloudmill's own entries from its TypeScript source (under `root`) into `outfile`. */
export const bundleFromSources = (name: BundleName, outfile: string, root: string = PACKAGE_ROOT): void => {
  const entry = path.join(root, BUNDLES[name].entry);
  if (!existsSync(entry)) throw new CloudmillConfigError(`cannot bundle ${name}: no source at ${entry}`);
  try {
    loadEsbuild().buildSync({ ...COMMON, entryPoints: [entry], outfile, absWorkingDir: root });
  } catch (err) {
    if (err instanceof CloudmillConfigError) throw err;
    throw new CloudmillConfigError(`cannot bundle ${name} from ${entry}: ${firstError(err)}`);
  }
};

/**
 * The CLI's own bundle (dist/assets/cli/, never deployed): `cloudmill` and its threads start
 * from a few files instead of some 230 modules each, which is most of a small run's time. Its
 * entries share chunks. Packages the run path never loads stay outside, imported from
 * node_modules when a command needs them (the AWS SDK, the emulator, CDK).
 */
export const CLI_BUNDLE = {
  dir: "cli",
  /** Each entry's file (`<name>.mjs`) and source; threads are found beside the chunk that starts them. */
  entries: {
    main: "lib/cli/entry.ts",
    taskThread: "lib/local/taskThread.ts",
    mapperThread: "lib/sandbox/mapperThread.ts",
    itemThread: "lib/sandbox/itemThread.ts",
  },
  external: ["@aws-sdk/*", "@smithy/*", "@aws-lambda-powertools/*", "fauxqs", "aws-cdk-lib", "constructs", "cdk-nag", "esbuild"],
} as const;

/** Builds the CLI's bundle from its TypeScript sources (under `root`) into `outdir`. */
export const bundleCliFromSources = (outdir: string, root: string = PACKAGE_ROOT): void => {
  const entryPoints = Object.fromEntries(Object.entries(CLI_BUNDLE.entries).map(([name, entry]) => [name, path.join(root, entry)]));
  try {
    loadEsbuild().buildSync({
      ...COMMON,
      entryPoints,
      outdir,
      splitting: true,
      chunkNames: "chunk-[hash]",
      outExtension: { ".js": ".mjs" },
      external: [...CLI_BUNDLE.external],
      target: "node20",
      // Less to parse at every start; names stay, so stack traces still read.
      minifyWhitespace: true,
      minifySyntax: true,
      absWorkingDir: root,
    });
  } catch (err) {
    throw new CloudmillConfigError(`cannot bundle the CLI: ${firstError(err)}`);
  }
};

/**
 * Bundles a lab's op module (absolute path `source`) into `outfile`: its imports, npm packages
 * found from its folder up (the lab's node_modules) included. `label` is how the lab named it.
 */
export const bundleOpsModule = (source: string, outfile: string, label: string): void => {
  const build = loadEsbuild();
  try {
    build.buildSync({ ...COMMON, entryPoints: [source], outfile, absWorkingDir: path.dirname(source) });
  } catch (err) {
    throw new CloudmillConfigError(`ops module ${label} does not bundle: ${firstError(err)}`);
  }
};

/** The prebuilt bundle `name` (dist/assets/...), or one line saying it is missing. */
export const prebuiltBundle = (name: BundleName): string => {
  const file = path.join(PREBUILT_DIR, BUNDLES[name].file);
  if (!existsSync(file)) throw new CloudmillConfigError(`prebuilt asset missing: ${file} (run npm run build)`);
  return file;
};
