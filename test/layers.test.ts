/**
 * The house rules a linter cannot state. The folders are the layers (docs/design.md, "Layers"):
 * arrows point down only. Every import of every source file is read with TypeScript's own
 * pre-processor (static, type-only and dynamic imports alike) and checked against the table
 * below. And no shipped line is longer than the formatter's width: Biome wraps code, but not
 * comments or string literals.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { packageRoot } from "../lib/local/paths.js";

type Layer = "core" | "sandbox" | "fs" | "local" | "aws" | "dev" | "sdk" | "cli" | "root" | "functions" | "worker" | "infra";

/** Which layers each layer may import (itself included where listed). */
const MAY_IMPORT: Readonly<Record<Layer, readonly Layer[]>> = {
  core: ["core"],
  // Threads that run a lab's task items under limits: for every role that maps chunks.
  sandbox: ["core", "sandbox"],
  // The filesystem as a BlobStore: the local engine's stores, and the worker's spill disk.
  fs: ["core", "fs"],
  local: ["core", "sandbox", "fs", "local"],
  aws: ["core", "sandbox", "fs", "aws"],
  dev: ["core", "sandbox", "fs", "local", "aws", "dev"],
  sdk: ["core", "local", "aws", "sdk"],
  cli: ["core", "sandbox", "fs", "local", "aws", "dev", "sdk", "cli"],
  root: ["core", "local", "sdk"],
  // What a deployed role runs: never the dev cloud, the CLI or the SDK.
  functions: ["core", "aws"],
  worker: ["core", "aws"],
  infra: ["core", "infra"],
};

/** Packages a layer may import; anything else is refused. Core is pure: no AWS, no I/O library. */
const PACKAGES: Readonly<Partial<Record<Layer, RegExp>>> = {
  // Pure helpers only: hashing, path/URL arithmetic for the module loader, a linear-time regex engine, a JS parser (digests),
  // and decoders of compressed bytes (zlib through its streams, fzstd, xxhash-wasm for zstd's checksums).
  core: /^(zod|re2js|acorn|node:crypto|node:path|node:url|node:zlib|node:stream|node:stream\/promises|fzstd|xxhash-wasm)$/,
  sandbox: /^node:.*$/,
  fs: /^node:.*$/,
  local: /^(zod|node:.*)$/,
  // esbuild: bundles a lab's ops (and cloudmill's roles, from sources) at synth; an optional peer dependency.
  infra: /^(aws-cdk-lib(\/.*)?|constructs|cdk-nag|esbuild|zod|node:.*)$/,
};

/**
 * Single files allowed a package their layer is not. The op-module loader reads a module that
 * does not parse, to name its line and column (Node does not for an ES module). It also imports
 * tsx for a module in TypeScript, by a name held in a variable (so that no bundle copies tsx):
 * an import the pre-processor cannot see, stated here so that it is known.
 */
const FILE_PACKAGES: Readonly<Record<string, RegExp>> = {
  "lib/core/ops/opModules.ts": /^node:fs\/promises$/,
};

/** Test tooling nothing shipped may import. */
const TEST_TOOLING = /^(vitest|fast-check|@vitest\/.*)$/;

const layerOf = (file: string): Layer | undefined => {
  const [top, second] = file.split("/");
  if (top === "lib") {
    if (second === "index.ts") return "root";
    return (["core", "sandbox", "fs", "local", "aws", "dev", "sdk", "cli"] as const).find((l) => l === second);
  }
  return (["functions", "worker", "infra"] as const).find((l) => l === top);
};

interface SourceFile {
  /** Path from the package root, with forward slashes. */
  readonly file: string;
  readonly text: string;
}

/** Every rule an import breaks, one line each: `from → to: why`. */
const layerViolations = (files: readonly SourceFile[]): string[] => {
  const out: string[] = [];
  for (const { file, text } of files) {
    const from = layerOf(file);
    if (!from) continue;
    for (const { fileName: spec } of ts.preProcessFile(text, true, true).importedFiles) {
      if (spec.startsWith(".")) {
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
        if (target.startsWith("test/") || target.startsWith("bench/")) {
          out.push(`${file} → ${target}: shipped code imports test or bench tooling`);
          continue;
        }
        const to = layerOf(target);
        if (to && !MAY_IMPORT[from].includes(to)) out.push(`${file} → ${target}: ${from} may not import ${to}`);
      } else {
        if (TEST_TOOLING.test(spec)) out.push(`${file} → ${spec}: shipped code imports test tooling`);
        const allowed = PACKAGES[from];
        if (allowed && !allowed.test(spec) && !FILE_PACKAGES[file]?.test(spec))
          out.push(`${file} → ${spec}: ${from} may not import this package`);
      }
    }
  }
  return out;
};

const sourcesOf = async (dirs: readonly string[]): Promise<SourceFile[]> => {
  const files: SourceFile[] = [];
  for (const dir of dirs) {
    for (const entry of await readdir(path.join(packageRoot, dir), { recursive: true })) {
      if (!entry.endsWith(".ts")) continue;
      const file = path.posix.join(dir, entry.split(path.sep).join("/"));
      files.push({ file, text: await readFile(path.join(packageRoot, file), "utf8") });
    }
  }
  return files;
};

/** Every package the module graph from `entry` reaches, following relative imports through the sources. */
const packagesReachedFrom = (files: readonly SourceFile[], entry: string): Set<string> => {
  const byFile = new Map(files.map((f) => [f.file, f.text]));
  const seen = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = byFile.get(file);
    if (text === undefined) throw new Error(`${file}: not a source file`);
    for (const { fileName: spec } of ts.preProcessFile(text, true, true).importedFiles) {
      if (spec.startsWith(".")) visit(path.posix.normalize(path.posix.join(path.posix.dirname(file), spec)).replace(/\.js$/, ".ts"));
      else packages.add(spec);
    }
  };
  visit(entry);
  return packages;
};

describe("the package root", () => {
  it('loads no AWS client, emulator or CDK: `import { defineOp } from "cloudmill"` stays light', async () => {
    const files = await sourcesOf(["lib"]);
    const reached = [...packagesReachedFrom(files, "lib/index.ts")];
    expect(reached.filter((p) => /^(@aws-sdk|@smithy|@aws-lambda-powertools|fauxqs|aws-cdk-lib|constructs|cdk-nag)(\/|$)/.test(p))).toEqual(
      [],
    );
    // The SDK subpath is where the AWS clients are.
    expect([...packagesReachedFrom(files, "lib/sdk/index.ts")]).toContain("@aws-sdk/client-s3");
  });
});

describe("line length", () => {
  it("no line of lib/, infra/, functions/ or worker/ is longer than biome.json's lineWidth", async () => {
    const { formatter } = JSON.parse(await readFile(path.join(packageRoot, "biome.json"), "utf8")) as { formatter: { lineWidth: number } };
    expect(formatter.lineWidth).toBeGreaterThanOrEqual(80);
    const long: string[] = [];
    for (const { file, text } of await sourcesOf(["lib", "infra", "functions", "worker"])) {
      text.split("\n").forEach((line, i) => {
        if ([...line].length > formatter.lineWidth) long.push(`${file}:${i + 1} (${[...line].length})`);
      });
    }
    expect(long).toEqual([]);
  });
});

describe("the layering rule", () => {
  it("holds for every source file", async () => {
    const files = await sourcesOf(["lib", "functions", "worker", "infra"]);
    expect(files.length).toBeGreaterThan(80);
    expect(layerViolations(files)).toEqual([]);
  });

  it("every file under lib/ belongs to a layer", async () => {
    const files = await sourcesOf(["lib"]);
    expect(files.filter((f) => layerOf(f.file) === undefined).map((f) => f.file)).toEqual([]);
  });

  it.each([
    ["core importing an AWS adapter", "lib/core/pipeline/x.ts", 'import { s3Uri } from "../../aws/clients.js";', "core may not import aws"],
    ["core importing the AWS SDK", "lib/core/x.ts", 'import { S3Client } from "@aws-sdk/client-s3";', "core may not import this package"],
    [
      "core reading files outside the op-module loader",
      "lib/core/x.ts",
      'import { readFile } from "node:fs/promises";',
      "core may not import this package",
    ],
    [
      "core loading a module by type only",
      "lib/core/x.ts",
      'import type { DevCloud } from "../dev/devCloud.js";',
      "core may not import dev",
    ],
    ["aws importing the local engine", "lib/aws/x.ts", 'const m = await import("../local/localEngine.js");', "aws may not import local"],
    [
      "aws importing fault injection",
      "lib/aws/x.ts",
      'export { faultyClients } from "../dev/faultInjection.js";',
      "aws may not import dev",
    ],
    ["the worker entry importing the dev cloud", "worker/main.ts", 'import "../lib/dev/faultyWorker.js";', "worker may not import dev"],
    ["a function importing the SDK", "functions/x.ts", 'import { Cloudmill } from "../lib/sdk/index.js";', "functions may not import sdk"],
    [
      "lib importing test helpers",
      "lib/local/x.ts",
      'import { refResult } from "../../test/helpers/reference.js";',
      "imports test or bench tooling",
    ],
    ["lib importing vitest", "lib/sdk/x.ts", 'import { expect } from "vitest";', "imports test tooling"],
    ["infra importing the SDK", "infra/x.ts", 'import { Cloudmill } from "../lib/sdk/Cloudmill.js";', "infra may not import sdk"],
  ])("catches %s", (_what, file, text, why) => {
    expect(layerViolations([{ file, text }])).toEqual([expect.stringContaining(why)]);
  });

  it("lets a layer import what lies below it", () => {
    expect(
      layerViolations([
        { file: "lib/cli/x.ts", text: 'import "../dev/devCloud.js"; import "../sdk/index.js"; import "../core/errors.js";' },
        { file: "lib/local/x.ts", text: 'import "../core/ports.js"; import { z } from "zod"; import fs from "node:fs";' },
        { file: "functions/x.ts", text: 'import "../lib/aws/handlers.js"; import "../lib/core/errors.js";' },
      ]),
    ).toEqual([]);
  });
});
