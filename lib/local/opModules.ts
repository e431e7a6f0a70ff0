/** Loading op modules the operator names (`--ops module`): the one place that imports user code. */
import path from "node:path";
import { pathToFileURL } from "node:url";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import { isOp } from "../core/ops/defineOp.js";
import type { OpRegistry } from "../core/ops/registry.js";
import type { AnyOp } from "../core/ops/types.js";

/** Imports a module and registers every op it exports (made with defineOp). */
export const loadOpsModule = async (specifier: string, registry: OpRegistry): Promise<string[]> => {
  const url = specifier.startsWith("file:") ? specifier : pathToFileURL(path.resolve(specifier)).href;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
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
