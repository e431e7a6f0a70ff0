/**
 * A function's mapper threads for a lab's op code. The splitter maps lab ops inline on them:
 * there, as on the fleet, the chunk's time limit (here also the function's own, through the
 * inline budget) ends a map that never yields, and one that allocates without bound fails its
 * chunk instead of the function. The reducer folds and finalizes a lab op's parts on one, each
 * call under the task's limit (partMerge.ts), so that op code that never returns fails its job
 * rather than time the function out on every redelivery.
 */
import type { MapperHost } from "../core/pipeline/mappers.js";
import { ThreadMapperHost } from "../sandbox/ThreadMapperHost.js";
import { mapperHeap } from "./containerMemory.js";

export interface FunctionMappersOptions {
  /** The lab's op modules; none: no threads (built-ins map on the function's own thread). */
  readonly opsModules: readonly string[];
  /** The function's memory, in MiB (Lambda's AWS_LAMBDA_FUNCTION_MEMORY_SIZE). */
  readonly memoryMiB: number;
  /** A chunk's time limit (the stack's taskTimeout). */
  readonly taskTimeoutSeconds: number;
}

export const functionMappers = (options: FunctionMappersOptions): MapperHost | undefined =>
  options.opsModules.length === 0
    ? undefined
    : new ThreadMapperHost({
        opsModules: options.opsModules,
        taskTimeoutSeconds: options.taskTimeoutSeconds,
        // Two threads at most: a CSV chunk that may start inside a quoted field is read two ways.
        ...mapperHeap(options.memoryMiB * 2 ** 20, 2),
      });
