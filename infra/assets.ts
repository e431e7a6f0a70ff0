/**
 * What a pipeline deploys, staged at synth in a folder of its own in the cloud assembly
 * (`cdk.out/cloudmill.<id>/`), from the installed package, never from a repository:
 *
 * - `ops/<n>-<name>.mjs`: each of the lab's op modules, bundled (bundling.ts); its listing, with
 *   code digests, computed by importing those very files in a child process.
 * - one folder per function (`<role>/`): the ops (splitter and reducer), to which CDK's local
 *   bundling adds `index.mjs` (prebuilt, or bundled from sources when running from them).
 * - `worker-image/`: the worker image's build context: `Dockerfile` (worker/Dockerfile, plus the
 *   lab's own stage when given), `worker/main.mjs`, `ops/`, and the lab's folder as `lab/`, less
 *   what its .dockerignore names and files that look like secrets (`neverCopied`).
 *
 * A stack CDK does not bundle (`aws:cdk:bundling-stacks`, e.g. `cdk deploy OtherStack`) gets
 * placeholders for the roles' code, as CDK does for its own bundled assets; ops are always bundled
 * (cheap), so the listing and a bad module are known on every synth.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { AssetHashType, DockerImage, IgnoreStrategy, type BundlingOptions, type ILocalBundling } from "aws-cdk-lib";
import * as lambda from "aws-cdk-lib/aws-lambda";
import { OpsListing } from "../lib/core/ops/registryListing.js";
import { listingOf } from "../lib/core/ops/registryListing.js";
import { OpRegistry } from "../lib/core/ops/registry.js";
import { BUNDLES, FROM_SOURCES, PACKAGE_ROOT, bundleFromSources, bundleOpsModule, prebuiltBundle, type BundleName } from "./bundling.js";
import { CloudmillConfigError } from "./props.js";

/** Where Lambda unpacks a function's code (LAMBDA_TASK_ROOT), and where the worker image keeps its files (WORKDIR). */
export const LAMBDA_TASK_ROOT = "/var/task";
export const WORKER_APP_DIR = "/app";

/** The base stage of worker/Dockerfile, which a lab's `workerDockerfile` must start from. */
export const WORKER_BASE_STAGE = "cloudmill-worker";

/** Folders never copied from a lab's Dockerfile folder into the image context: bulky, or holding credentials. */
const NOT_COPIED_DIRS = new Set(["node_modules", "cdk.out", ".git", ".ssh", ".aws", ".gnupg", ".docker", ".kube"]);

/**
 * Files never copied from a lab's Dockerfile folder, at any depth, whatever its .dockerignore
 * says: the names secrets usually go by (environment files, registry and git credentials, keys).
 */
const NOT_COPIED_FILES: readonly RegExp[] = [
  /^\.env(\..*)?$/,
  /^\.(npmrc|yarnrc\.yml|netrc|pypirc|git-credentials)$/,
  /^id_(rsa|dsa|ecdsa|ed25519)/,
  /\.(pem|key|p12|pfx)$/,
];

/** Whether a lab folder's entry is left out of the image context whatever the lab asks. */
const neverCopied = (name: string, isDirectory: boolean): boolean =>
  isDirectory ? NOT_COPIED_DIRS.has(name) : NOT_COPIED_FILES.some((re) => re.test(name));

/** A lab's op modules, bundled. */
export interface StagedOps {
  /** Bundle paths relative to a role's root: `ops/0-index.mjs`, ... in the order given. */
  readonly files: readonly string[];
  /** The deployed registry: built-ins and the lab's ops, with their code digests. */
  readonly listing: OpsListing;
}

/** `./ops/index.ts` → `index`; what is left is safe in a file name. */
const baseName = (file: string): string =>
  path
    .basename(file)
    .replace(/\.[^.]*$/, "")
    .replace(/[^A-Za-z0-9_-]/g, "_");

/** The script that describes op bundles: prebuilt, or bundled from sources into the staging folder. */
const describeScript = (staging: string): string => {
  if (!FROM_SOURCES) return prebuiltBundle("describeOps");
  const script = path.join(staging, "describeOps.mjs");
  bundleFromSources("describeOps", script);
  return script;
};

/**
 * The listing of the built-ins plus the op bundles, computed by a child Node process that
 * imports them, as the deployed roles do; a module that fails there fails synth on one line.
 */
const describe = (staging: string, bundles: readonly string[], labels: readonly string[]): OpsListing => {
  if (bundles.length === 0) return listingOf(new OpRegistry());
  let out: string;
  try {
    out = execFileSync(process.execPath, [describeScript(staging), JSON.stringify(bundles)], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 120_000,
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? "").trim();
    const line = (stderr.split("\n").find((l) => l.trim() !== "") ?? (err as Error).message.split("\n")[0]!).trim();
    // The child names the staged bundle; the lab knows its module by the name it gave.
    const named = bundles.reduce((l, b, i) => l.split(b).join(labels[i]!), line);
    throw new CloudmillConfigError(`ops: ${named}`);
  }
  return OpsListing.parse(JSON.parse(out));
};

/** Bundles each op module into `<staging>/ops/` and describes them. `ops` are absolute paths; `labels` how the lab named them. */
export const stageOps = (staging: string, ops: readonly string[], labels: readonly string[] = ops): StagedOps => {
  const files = ops.map((m, i) => `ops/${i}-${baseName(m)}.mjs`);
  mkdirSync(path.join(staging, "ops"), { recursive: true });
  for (const [i, m] of ops.entries()) bundleOpsModule(m, path.join(staging, files[i]!), labels[i]!);
  const listing = describe(
    staging,
    files.map((f) => path.join(staging, f)),
    labels,
  );
  return { files, listing };
};

/** The absolute paths a role's code loads the ops from, for CLOUDMILL_OPS_MODULES. */
export const opsModulePaths = (root: string, ops: StagedOps): string[] => ops.files.map((f) => path.posix.join(root, f));

/** Writes a role's code to `outfile`: bundled from sources when running from them, else the prebuilt bundle. */
const writeRoleCode = (name: BundleName, outfile: string): void => {
  mkdirSync(path.dirname(outfile), { recursive: true });
  if (FROM_SOURCES) bundleFromSources(name, outfile);
  else copyFileSync(prebuiltBundle(name), outfile);
};

/** CDK's local bundling of a function: the staged folder (its ops) plus `index.mjs`. */
class FunctionBundling implements ILocalBundling {
  public constructor(
    private readonly role: "splitter" | "reducer" | "deadLetters",
    private readonly sourceDir: string,
  ) {}

  public tryBundle(outputDir: string): boolean {
    cpSync(this.sourceDir, outputDir, { recursive: true });
    writeRoleCode(this.role, path.join(outputDir, path.basename(BUNDLES[this.role].file)));
    // The lab ops the splitter maps inline, and the reducer folds, run on a thread started from this file, beside index.mjs.
    if (this.role !== "deadLetters") writeRoleCode("mapperThread", path.join(outputDir, path.basename(BUNDLES.mapperThread.file)));
    return true;
  }
}

/**
 * A function's code: `index.mjs` (handler `index.handler`) and, for the roles that need the op
 * registry, the op bundles under `ops/`, loaded from /var/task/ops/; theirs also have
 * `mapperThread.mjs`.
 */
export const functionCode = (
  staging: string,
  role: "splitter" | "reducer" | "deadLetters",
  ops: StagedOps | undefined,
): lambda.AssetCode => {
  const sourceDir = path.join(staging, role);
  mkdirSync(sourceDir, { recursive: true });
  if (ops && ops.files.length > 0) cpSync(path.join(staging, "ops"), path.join(sourceDir, "ops"), { recursive: true });
  const bundling: BundlingOptions = {
    // Never pulled: local bundling always succeeds (it only copies files or runs esbuild in this process).
    image: DockerImage.fromRegistry("cloudmill-local-bundling-only"),
    local: new FunctionBundling(role, sourceDir),
  };
  return lambda.Code.fromAsset(sourceDir, { assetHashType: AssetHashType.OUTPUT, bundling });
};

/**
 * Copies a folder's files, leaving out what `neverCopied` names, what `ignore` ignores (the
 * folder's .dockerignore), and the folders in `skip` (the cloud assembly, which may lie inside
 * the lab's folder and holds the very context being written). Symbolic links are not followed.
 */
const copyTree = (from: string, to: string, skip: readonly string[], ignore: IgnoreStrategy): void => {
  mkdirSync(to, { recursive: true });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const src = path.join(from, entry.name);
    if (neverCopied(entry.name, entry.isDirectory()) || skip.includes(src)) continue;
    if (entry.isDirectory()) {
      // A folder is walked unless the patterns leave out everything under it (a later `!` may keep a file).
      if (!ignore.completelyIgnores(src)) copyTree(src, path.join(to, entry.name), skip, ignore);
    } else if (entry.isFile() && !ignore.ignores(src)) copyFileSync(src, path.join(to, entry.name));
  }
};

/** The patterns of a folder's .dockerignore, as Docker reads them, relative to that folder. */
const dockerIgnoreOf = (dir: string): IgnoreStrategy => {
  const file = path.join(dir, ".dockerignore");
  const patterns = existsSync(file)
    ? readFileSync(file, "utf8")
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l !== "" && !l.startsWith("#"))
    : [];
  return IgnoreStrategy.docker(dir, patterns);
};

/** A lab's Dockerfile stage, checked: its first instruction must be `FROM cloudmill-worker`. */
const labStage = (file: string): string => {
  if (!existsSync(file)) throw new CloudmillConfigError(`workerDockerfile: no file at ${file}`);
  const lines = readFileSync(file, "utf8").split("\n");
  const first = lines.find((l) => l.trim() !== "" && !l.trim().startsWith("#"));
  if (first === undefined || !new RegExp(`^\\s*FROM\\s+${WORKER_BASE_STAGE}(\\s|$)`, "i").test(first)) {
    throw new CloudmillConfigError(
      `workerDockerfile ${file} must start with "FROM ${WORKER_BASE_STAGE}" (cloudmill's worker stage), got ${JSON.stringify(first ?? "")}`,
    );
  }
  // A parser directive is only valid at the top of the whole file, which is cloudmill's.
  return lines.filter((l) => !/^#\s*syntax\s*=/i.test(l)).join("\n");
};

export interface WorkerContextOptions {
  /** Whether to put the real worker bundle in (false: a placeholder, the stack is not being bundled). */
  readonly bundle: boolean;
  /** Absolute path of the lab's Dockerfile stage, whose folder goes in as `lab/`. */
  readonly workerDockerfile?: string;
  /** The cloud assembly's folder: never copied into the context. */
  readonly outdir: string;
}

/**
 * Stages the worker image's build context in `<staging>/worker-image/` and returns its path:
 * cloudmill's Dockerfile (worker/Dockerfile, shipped in the package) with the lab's stage
 * appended, the worker bundle, the op bundles and their listing, and the lab's folder as `lab/`.
 */
export const stageWorkerContext = (staging: string, ops: StagedOps, options: WorkerContextOptions): string => {
  const context = path.join(staging, "worker-image");
  mkdirSync(path.join(context, "ops"), { recursive: true });
  let dockerfile = readFileSync(path.join(PACKAGE_ROOT, "worker", "Dockerfile"), "utf8");
  if (options.workerDockerfile !== undefined) {
    const labDir = path.dirname(options.workerDockerfile);
    dockerfile +=
      `\n# ── the lab's stage, from ${path.basename(options.workerDockerfile)}; its folder is in the context as lab/ ──\n` +
      labStage(options.workerDockerfile);
    copyTree(labDir, path.join(context, "lab"), [path.resolve(options.outdir), path.resolve(staging)], dockerIgnoreOf(labDir));
  }
  writeFileSync(path.join(context, "Dockerfile"), dockerfile);
  for (const f of ops.files) copyFileSync(path.join(staging, f), path.join(context, f));
  // What this image runs, with the digests jobs record (also published to _ops/registry.json).
  writeFileSync(path.join(context, "ops", "registry.json"), `${JSON.stringify(ops.listing, null, 2)}\n`);
  for (const name of ["worker", "itemThread", "mapperThread"] as const) {
    const file = path.join(context, BUNDLES[name].file);
    if (options.bundle) writeRoleCode(name, file);
    else {
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, "// Placeholder: this stack was not bundled (aws:cdk:bundling-stacks); deploy bundles the worker.\n");
    }
  }
  return context;
};

/** A fresh folder for one pipeline's synth-time files, in the cloud assembly. */
export const freshStagingDir = (assetOutdir: string, uniqueId: string): string => {
  // Absolute: an App's outdir may be relative (`new App({ outdir: "cdk.out" })`), esbuild's working directory is not the app's.
  const dir = path.resolve(assetOutdir, `cloudmill.${uniqueId}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
};
