/**
 * Loading op modules the operator names (`--ops module`, or the modules a lab deployed): the one
 * place that imports code. A job names an op; it never names a module.
 *
 * A module written in TypeScript (`.ts`, `.mts`, `.cts`) is imported through tsx's scoped loader
 * (`tsImport`): its own imports of `.ts` files (as `./x.js` or `./x.ts`) load too, and nothing
 * else in the process goes through tsx. The deployed roles never meet one: the stack bundles a
 * lab's modules into `.mjs` at synth (infra/bundling.ts).
 *
 * A module that does not load is named as the operator wrote it, never by cloudmill's own files,
 * and a syntax error by its file, line and column (Node gives neither for an ES module).
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parse } from "acorn";
import { CloudmillError, ErrorCode } from "../errors.js";
import { isOp } from "./defineOp.js";
import { OpRegistry } from "./registry.js";
import type { AnyOp } from "./types.js";

/** Extensions read as TypeScript. */
const TYPESCRIPT = /\.[cm]?ts$/;

/**
 * tsx's API, named by a value rather than a literal so that no bundler copies it into cloudmill's
 * bundles: a copied tsx could not find its own loader file, and a deployed role has no use for it.
 */
const TSX_API: string = "tsx/esm/api";

interface Tsx {
  tsImport(specifier: string, parentURL: string): Promise<unknown>;
}

const importTypeScript = async (url: string): Promise<unknown> => {
  let tsx: Tsx;
  try {
    tsx = (await import(TSX_API)) as Tsx;
  } catch (err) {
    if ((err as { code?: string }).code !== "ERR_MODULE_NOT_FOUND") throw err;
    throw new Error("a module in TypeScript needs tsx: npm install tsx");
  }
  return tsx.tsImport(url, import.meta.url);
};

/** This file, as Node names it in errors (in a bundle, the bundle's chunk): never shown to a user. */
const SELF = [import.meta.url, fileURLToPath(import.meta.url)];

/** A file as a user would write it: `./ops/a.mjs` under the working directory, else its absolute path. */
const shownPath = (file: string): string => {
  const abs = file.startsWith("file:") ? fileURLToPath(file) : path.resolve(file);
  const rel = path.relative(process.cwd(), abs);
  return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel) ? `./${rel.split(path.sep).join("/")}` : abs;
};

/** An operator's specifier as they wrote it; a `file:` URL (as `cloudmill dev` hands them on) as a path. */
const shownModule = (specifier: string): string => (specifier.startsWith("file:") ? shownPath(specifier) : specifier);

/** Where a syntax error is: line and column 1-based, as editors count. */
type Located = { file: string; line: number; column: number };

/** Relative imports a module states (`import … from "./x.mjs"`, `export … from`), as files. */
const relativeImports = (tree: ReturnType<typeof parse>, file: string): string[] =>
  tree.body.flatMap((node) => {
    const source = "source" in node && node.source && typeof node.source.value === "string" ? node.source.value : undefined;
    return source?.startsWith(".") ? [path.resolve(path.dirname(file), source)] : [];
  });

/**
 * Where a JavaScript module, or one of the modules it imports by relative path, fails to parse:
 * Node's SyntaxError for an ES module names neither. acorn parses as V8 does, so the first error it
 * meets is V8's. Undefined when every file parses (the error lies elsewhere: a missing export).
 */
const syntaxErrorIn = async (entry: string): Promise<Located | undefined> => {
  const queue = [entry];
  const seen = new Set(queue);
  // Bounded: a lab's module graph, not its node_modules.
  for (let i = 0; i < queue.length && i < 200; i++) {
    const file = queue[i]!;
    if (!/\.[cm]?js$/.test(file)) continue;
    let source: string;
    try {
      source = await readFile(file, "utf8");
    } catch {
      continue;
    }
    let tree: ReturnType<typeof parse>;
    try {
      tree = parse(source, { ecmaVersion: "latest", sourceType: "module", allowHashBang: true });
    } catch (err) {
      const loc = (err as { loc?: { line: number; column: number } }).loc;
      return loc ? { file, line: loc.line, column: loc.column + 1 } : undefined;
    }
    for (const next of relativeImports(tree, file)) {
      if (!seen.has(next)) {
        seen.add(next);
        queue.push(next);
      }
    }
  }
  return undefined;
};

/** esbuild's error through tsx: `Transform failed with 1 error:\n/abs/a.ts:2:0: ERROR: Unexpected "}"`. */
const ESBUILD_ERROR = /^(.+?):(\d+):(\d+): ERROR: (.*)$/m;

/** Every absolute path of the message that lies under the working directory, as `./…`; cloudmill's own file left out. */
const shortened = (message: string): string => {
  let out = message;
  for (const self of SELF) out = out.split(` imported from ${self}`).join("").split(self).join("cloudmill");
  const cwd = process.cwd() + path.sep;
  return out.split(`file://${cwd}`).join("./").split(cwd).join("./");
};

/** Why a module did not load, on one line, in the operator's terms. */
const whyNotLoaded = async (err: unknown, url: string): Promise<string> => {
  const e = err as Error & { code?: string; url?: string };
  const file = fileURLToPath(url);
  if (e?.code === "ERR_MODULE_NOT_FOUND" && e.url === url) return `no file at ${file}`;
  const message = String(e?.message ?? err);
  const esbuild = ESBUILD_ERROR.exec(message);
  if (esbuild) {
    const [, where, line, column, what] = esbuild;
    return `${shownPath(where!)}:${line}:${Number(column) + 1}: SyntaxError: ${what}`;
  }
  if (e?.name === "SyntaxError") {
    const at = await syntaxErrorIn(file).catch(() => undefined);
    if (at) return `${shownPath(at.file)}:${at.line}:${at.column}: SyntaxError: ${message.split("\n")[0]}`;
  }
  return shortened(message.split("\n")[0]!);
};

/** Imports a module and registers every op it exports (made with defineOp). */
export const loadOpsModule = async (specifier: string, registry: OpRegistry): Promise<string[]> => {
  const url = specifier.startsWith("file:") ? specifier : pathToFileURL(path.resolve(specifier)).href;
  const shown = shownModule(specifier);
  let mod: Record<string, unknown>;
  try {
    mod = (TYPESCRIPT.test(new URL(url).pathname) ? await importTypeScript(url) : await import(url)) as Record<string, unknown>;
  } catch (err) {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `--ops ${shown}: cannot load (${await whyNotLoaded(err, url)})`, {
      field: "ops",
    });
  }
  const found = new Set<AnyOp>();
  for (const value of Object.values(mod)) {
    for (const v of Array.isArray(value) ? value : [value]) if (isOp(v)) found.add(v);
  }
  if (found.size === 0) {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `--ops ${shown}: exports no op (make them with defineOp)`, { field: "ops" });
  }
  for (const op of found) registry.register(op);
  return [...found].map((o) => o.name);
};

/** The built-in ops plus every op the modules export, loaded in order. */
export const opsRegistry = async (modules: readonly string[]): Promise<OpRegistry> => {
  const registry = new OpRegistry();
  for (const m of modules) await loadOpsModule(m, registry);
  return registry;
};
