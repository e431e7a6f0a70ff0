/**
 * Ops are chosen by name from a registry: the built-ins plus modules the operator loads
 * (`--ops module`). A job can select an op, never inject code.
 */
import { pathToFileURL } from "node:url";
import path from "node:path";
import { CloudmillError, ErrorCode } from "../errors.js";
import { count } from "./count.js";
import { isOp, OP_BRAND } from "./defineOp.js";
import { grep } from "./grep.js";
import { histogram } from "./histogram.js";
import { stats } from "./stats.js";
import type { AnyOp } from "./types.js";
import { wordcount } from "./wordcount.js";

export const builtinOps: readonly AnyOp[] = [count, stats, wordcount, histogram, grep];

export class OpRegistry {
  readonly #ops = new Map<string, AnyOp>();

  constructor(ops: Iterable<AnyOp> = builtinOps) {
    for (const op of ops) this.register(op);
  }

  register(op: AnyOp): void {
    if (this.#ops.has(op.name)) throw new CloudmillError(ErrorCode.INVALID_SPEC, `op ${JSON.stringify(op.name)} is defined twice`);
    this.#ops.set(op.name, op);
  }

  /** The op, or an UNKNOWN_OP error that lists the known ones. */
  get(name: string): AnyOp {
    const op = this.#ops.get(name);
    if (!op) {
      throw new CloudmillError(ErrorCode.UNKNOWN_OP, `unknown op ${JSON.stringify(name)} (known: ${this.names().join(", ")})`, { field: "op" });
    }
    return op;
  }

  has(name: string): boolean {
    return this.#ops.has(name);
  }

  names(): string[] {
    return [...this.#ops.keys()].sort();
  }

  all(): AnyOp[] {
    return this.names().map((n) => this.#ops.get(n)!);
  }
}

/** Imports a module and registers every op it exports (made with defineOp). */
export const loadOpsModule = async (specifier: string, registry: OpRegistry): Promise<string[]> => {
  const url = specifier.startsWith("file:") ? specifier : pathToFileURL(path.resolve(specifier)).href;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `--ops ${specifier}: cannot load (${(err as Error).message.split("\n")[0]})`, { field: "ops" });
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

export { OP_BRAND };
