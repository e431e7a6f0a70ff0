/**
 * Ops are chosen by name from a registry: the built-ins plus modules the operator loads
 * (`--ops module`). A job can select an op, never inject code.
 */
import { CloudmillError, ErrorCode } from "../errors.js";
import { VERSION } from "../version.js";
import { count } from "./count.js";
import { grep } from "./grep.js";
import { histogram } from "./histogram.js";
import { stats } from "./stats.js";
import type { AnyOp } from "./types.js";
import { wordcount } from "./wordcount.js";
import { groupby } from "./groupby.js";
import { distinct } from "./distinct.js";
import { sort } from "./sort.js";
import { checksum } from "./checksum.js";

export const builtinOps: readonly AnyOp[] = [count, stats, wordcount, histogram, grep, groupby, distinct, sort, checksum];

/** True for an op that ships with cloudmill (trusted, linear in its input), not a lab's. */
export const isBuiltinOp = (op: AnyOp): boolean => builtinOps.includes(op);

/** How a built-in op's digest begins: `builtin-<package version>`. */
export const BUILTIN_DIGEST_PREFIX = "builtin-";

/** An op's code digest: its own, or `builtin-<package version>` for the ops that ship with cloudmill. */
export const opDigest = (op: AnyOp): string => op.digest ?? `${BUILTIN_DIGEST_PREFIX}${VERSION}`;

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
      throw new CloudmillError(ErrorCode.UNKNOWN_OP, `unknown op ${JSON.stringify(name)} (known: ${this.names().join(", ")})`, {
        field: "op",
      });
    }
    return op;
  }

  /** The digest of an op's code: its own (user ops), or the package version (built-ins). */
  digestOf(name: string): string {
    return opDigest(this.get(name));
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
