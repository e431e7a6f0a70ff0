/**
 * Keyed ops: a map that emits (key, value) pairs, an associative `combine` of one key's values
 * and a `row` per key. The pipeline combines pairs map-side, partitions them by key into the
 * shuffle, and reduce tasks on the fleet write one JSON line per key to the job's parts.
 */
import { CloudmillError, ErrorCode } from "../errors.js";
import type { Format, Params } from "../job/spec.js";
import type { RecordBlock } from "../records/alignedBlocks.js";
import { ShuffleRef, sumFieldCounts, type KeyedPartial } from "../shuffle/shuffleRun.js";
import { FieldTally } from "./recordFields.js";
import type { AnyOp, MapContext, Op } from "./types.js";

export interface KeyedOpDefinition<P> {
  readonly name: string;
  readonly description: string;
  readonly formats: readonly Format[];
  readonly paramsHelp: readonly string[];
  parseParams(raw: Params): P;
  /**
   * A reader of a chunk's blocks that calls emit with each record's pairs. Fields read by name
   * are counted in `fields` (fieldReader), so that the job refuses a name no record has.
   */
  pairs(params: P, ctx: MapContext, fields: FieldTally): (block: RecordBlock, emit: (key: string, value: unknown) => void) => void;
  combine(a: unknown, b: unknown, params: P): unknown;
  row(key: string, value: unknown, params: P): unknown;
  /** See KeyedReduce.toJson. */
  toJson?(value: unknown): unknown;
  /** Combining keeps every value (see KeyedReduce). */
  readonly gathers?: boolean;
  /** Checks a key's value as it leaves a map task (a lab's combine may make one JSON cannot carry). */
  checkValue?(key: string, value: unknown): void;
}

/** What the map stage of a keyed job merges to: each chunk's shuffle output, in chunk order. */
export type ShuffleRefs = ShuffleRef[];

export const keyedOp = <P>(def: KeyedOpDefinition<P>): Op<P, unknown, never> => ({
  name: def.name,
  description: def.description,
  formats: def.formats,
  paramsHelp: def.paramsHelp,
  parseParams: def.parseParams,
  keyed: {
    combine: def.combine,
    row: def.row,
    ...(def.gathers ? { gathers: true } : {}),
    ...(def.toJson ? { toJson: def.toJson } : {}),
  },
  mapper(params, ctx) {
    const table = new Map<string, unknown>();
    const fields = new FieldTally();
    const read = def.pairs(params, ctx, fields);
    const emit = (key: string, value: unknown): void => {
      table.set(key, table.has(key) ? def.combine(table.get(key), value, params) : value);
    };
    const finish = (): KeyedPartial => {
      if (def.checkValue) for (const [k, v] of table) def.checkValue(k, v);
      const counts = fields.counts();
      const toJson = def.toJson;
      return { pairs: toJson ? [...table].map(([k, v]) => [k, toJson(v)]) : [...table], ...(counts ? { fields: counts } : {}) };
    };
    return { block: (block) => read(block, emit), finish };
  },
  merger() {
    const refs: ShuffleRefs = [];
    return { add: (p) => void refs.push(ShuffleRef.parse(p)), value: () => refs };
  },
  finalize() {
    throw new CloudmillError(ErrorCode.INTERNAL, `${def.name}: a keyed op's result is written by its reduce tasks`);
  },
});

export const isKeyedOp = (op: AnyOp): boolean => op.keyed !== undefined;

/** Several partials (a packed chunk's objects) as one, values of a key combined in table order; JSON values out, as each came in. */
export const mergeKeyedPartials = (op: AnyOp, params: unknown, partials: readonly KeyedPartial[]): KeyedPartial => {
  if (partials.length === 1) return partials[0]!;
  const merged = new Map<string, unknown>();
  for (const { pairs } of partials)
    for (const [k, v] of pairs) merged.set(k, merged.has(k) ? op.keyed!.combine(merged.get(k), v, params) : v);
  const fields = sumFieldCounts(partials.map((p) => p.fields));
  const toJson = op.keyed!.toJson;
  return { pairs: toJson ? [...merged].map(([k, v]) => [k, toJson(v)]) : [...merged], ...(fields ? { fields } : {}) };
};
