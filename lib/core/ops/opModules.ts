/**
 * Loading op modules the operator names (`--ops module`, or the modules a lab deployed): the one
 * place that imports code. A job names an op; it never names a module.
 *
 * A module written in TypeScript (`.ts`, `.mts`, `.cts`) is imported through tsx's scoped loader
 * (`tsImport`): its own imports of `.ts` files (as `./x.js` or `./x.ts`) load too, and nothing
 * else in the process goes through tsx. The deployed roles never meet one: the stack bundles a
 * lab's modules into `.mjs` at synth (infra/bundling.ts).
 */
import path from "node:path";
import { pathToFileURL } from "node:url";
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

/** Imports a module and registers every op it exports (made with defineOp). */
export const loadOpsModule = async (specifier: string, registry: OpRegistry): Promise<string[]> => {
  const url = specifier.startsWith("file:") ? specifier : pathToFileURL(path.resolve(specifier)).href;
  let mod: Record<string, unknown>;
  try {
    mod = (TYPESCRIPT.test(new URL(url).pathname) ? await importTypeScript(url) : await import(url)) as Record<string, unknown>;
  } catch (err) {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `--ops ${specifier}: cannot load (${(err as Error).message.split("\n")[0]})`, {
      field: "ops",
    });
  }
  const found = new Set<AnyOp>();
  for (const value of Object.values(mod)) {
    for (const v of Array.isArray(value) ? value : [value]) if (isOp(v)) found.add(v);
  }
  if (found.size === 0) {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `--ops ${specifier}: exports no op (make them with defineOp)`, { field: "ops" });
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
