/** Flag parsing shared by commands: `--param k=v` pairs, worker counts. */
import { invalidSpec } from "../core/errors.js";

/** Collects repeated `--param k=v` into an object (values stay strings; ops parse them). */
export const collectParam = (value: string, previous: Record<string, string> = {}): Record<string, string> => {
  const eq = value.indexOf("=");
  if (eq <= 0) throw invalidSpec(`--param ${JSON.stringify(value)}: expected NAME=VALUE, e.g. --param k=20`, "params");
  const name = value.slice(0, eq);
  if (Object.hasOwn(previous, name)) throw invalidSpec(`--param ${name} given twice`, `params.${name}`);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  Object.assign(out, previous);
  out[name] = value.slice(eq + 1);
  return out;
};

export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];
