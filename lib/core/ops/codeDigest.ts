/**
 * A digest of a function's code that is the same whichever tool printed it. The deployed roles
 * load a lab's module as esbuild bundled it; the lab's own process loads it as written, through
 * tsx or as tsc compiled it. Those print the same code with other layout, comments, quotes,
 * escapes, parentheses, empty statements, number spellings and `void 0` for `undefined`, and a bundle renames a
 * module-level name that collides with another module's by appending digits. So the digest is
 * taken over the function's syntax tree (acorn), where none of that shows: literals by value,
 * grouping by structure, the function's own bindings by the order they are bound, and free names
 * (a bundle may rename those too) without trailing digits: code that differs only in calling
 * `sha1` where it called `sha256` keeps its digest (change the op's description with such an edit).
 * Any other change to what the code does changes the tree.
 */
import { createHash } from "node:crypto";
import { parse, type Node } from "acorn";
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";

type AnyNode = Node & Record<string, unknown>;

/** Fields that say where a node is, or how its literal was spelled: not what the code does. */
const LAYOUT = new Set(["start", "end", "loc", "range", "raw", "sourceType", "shorthand"]);

const isNode = (v: unknown): v is AnyNode => typeof v === "object" && v !== null && typeof (v as { type?: unknown }).type === "string";

/** The function's source as a tree: an expression, or an object's method (`map(r) { … }`). */
const treeOf = (source: string): AnyNode | undefined => {
  for (const wrapped of [`(${source})`, `({${source}})`]) {
    try {
      return parse(wrapped, { ecmaVersion: "latest", sourceType: "module" }) as unknown as AnyNode;
    } catch {
      // not this shape: try the next
    }
  }
  return undefined;
};

/**
 * Every name the function binds itself (params, variables, functions, classes, catch clauses),
 * numbered in the order they are first bound: a bundle renames bindings too (`record` becomes
 * `record2` beside a dependency's `record`), so bound names are compared by that number.
 */
const boundNames = (root: AnyNode): Map<string, string> => {
  const names = new Map<string, string>();
  const pattern = (p: unknown): void => {
    if (!isNode(p)) return;
    if (p.type === "Identifier") {
      const name = p["name"] as string;
      if (!names.has(name)) names.set(name, `$${names.size}`);
    } else if (p.type === "ObjectPattern")
      for (const prop of p["properties"] as AnyNode[]) pattern(prop.type === "RestElement" ? prop["argument"] : prop["value"]);
    else if (p.type === "ArrayPattern") for (const e of p["elements"] as unknown[]) pattern(e);
    else if (p.type === "RestElement") pattern(p["argument"]);
    else if (p.type === "AssignmentPattern") pattern(p["left"]);
  };
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x);
      return;
    }
    if (!isNode(v)) return;
    if (v.type === "VariableDeclarator") pattern(v["id"]);
    if (/Function|ArrowFunction/.test(v.type)) for (const p of v["params"] as unknown[]) pattern(p);
    if ((/Function/.test(v.type) || /Class/.test(v.type)) && v["id"]) pattern(v["id"]);
    if (v.type === "CatchClause") pattern(v["param"]);
    for (const [k, child] of Object.entries(v)) if (!LAYOUT.has(k)) walk(child);
  };
  walk(root);
  return names;
};

/** The canonical form of a tree: JSON of its structure and values, layout and spelling left out. */
const canonicalTree = (root: AnyNode): string => {
  const bound = boundNames(root);
  const visit = (v: unknown, key?: string): unknown => {
    // An empty statement does nothing (a test runner's transform adds one after `for (;;) {}`).
    if (Array.isArray(v)) return v.filter((x) => !(isNode(x) && x.type === "EmptyStatement")).map((x) => visit(x));
    if (!isNode(v)) return typeof v === "bigint" ? `${v}n` : v;
    // esbuild prints `undefined` as `void 0`.
    if (v.type === "UnaryExpression" && v["operator"] === "void" && isNode(v["argument"]) && v["argument"]["value"] === 0) {
      return { id: "undefined" };
    }
    if (v.type === "Literal") {
      const regex = v["regex"] as { pattern: string; flags: string } | undefined;
      const value = v["value"];
      if (regex) return { regex };
      // JSON writes 1e400 (Infinity) as null: a number that is no finite double keeps its name.
      if (typeof value === "number" && !Number.isFinite(value)) return { number: String(value) };
      return { value: typeof value === "bigint" ? `${value}n` : (value ?? null) };
    }
    // A template with nothing substituted is a string, which a printer may quote either way.
    if (v.type === "TemplateLiteral" && (v["expressions"] as unknown[]).length === 0) {
      return { value: ((v["quasis"] as AnyNode[])[0]!["value"] as { cooked: string }).cooked };
    }
    if (v.type === "TemplateElement") return { cooked: (v["value"] as { cooked: string | null }).cooked };
    if (v.type === "Identifier") {
      const name = v["name"] as string;
      // A property's name is no binding; a bound name is its number; a free one may carry a bundle's collision digits.
      if (key === "property" || key === "key") return { id: name };
      return { id: bound.get(name) ?? name.replace(/(?<=\D)\d+$/, "") };
    }
    const out: Record<string, unknown> = {};
    for (const [k, child] of Object.entries(v)) {
      if (LAYOUT.has(k)) continue;
      const computed = v["computed"] === true;
      out[k] = visit(child, (k === "property" || k === "key") && computed ? undefined : k);
    }
    return out;
  };
  return JSON.stringify(visit(root));
};

/** The canonical text of a function's source (see above); the source itself if no parser takes it. */
export const canonicalCode = (source: string): string => {
  const tree = treeOf(source);
  return tree ? canonicalTree(tree) : source;
};

/**
 * A function whose code the digest cannot see: a bound one's source is `function () { [native
 * code] }` whatever it wraps, so two versions of an op would share a digest. A built-in the
 * engine gives by name (`Math.max`) shows its name, which is what it does.
 */
const isHiddenCode = (f: { readonly name: string }): boolean =>
  /\{\s*\[native code\]\s*\}\s*$/.test(String(f)) && (f.name === "" || f.name.startsWith("bound "));

/**
 * The first 16 hex digits of a SHA-256 over JSON `parts`, with functions as their canonical
 * code. A function whose code cannot be seen is refused, naming the op.
 */
export const codeDigest = (op: string, parts: readonly unknown[]): string =>
  createHash("sha256")
    .update(
      JSON.stringify(
        parts.map((p) => {
          if (typeof p !== "function") return p;
          if (isHiddenCode(p))
            throw new CloudmillError(
              ErrorCode.INVALID_SPEC,
              `op ${op}: ${p.name || "a function"} is bound (or its code is otherwise hidden), so its digest could not ` +
                "tell two versions of the op apart: pass a plain function (an arrow or function expression) instead",
            );
          return canonicalCode(String(p));
        }),
      ),
    )
    .digest("hex")
    .slice(0, 16);

/**
 * The params schema as JSON Schema (names, types, bounds): every worker parses a job's params
 * itself, so another bound is other code. Defaults are left out: one computed when the schema
 * parses (a date, a CPU count) differs between the processes that must agree on the digest,
 * so a change of default alone keeps the digest (change the op's description with it).
 * Nothing for an op without params (digests of such ops stay as they were).
 */
export const paramsOf = (schema: z.ZodType | undefined): string[] => {
  if (schema === undefined) return [];
  const withoutDefault = (ctx: { jsonSchema: Record<string, unknown> }): void => {
    delete ctx.jsonSchema["default"];
  };
  try {
    return [JSON.stringify(z.toJSONSchema(schema, { io: "input", unrepresentable: "any", override: withoutDefault }))];
  } catch {
    // A schema JSON Schema cannot show (a refinement's own code) is digested by what it can.
    return [String(schema.def?.type ?? "params")];
  }
};
