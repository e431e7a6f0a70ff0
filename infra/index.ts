export { CloudmillPipeline } from "./CloudmillPipeline.js";
export { WORKER_BASE_STAGE } from "./assets.js";
export { CloudmillStack, type CloudmillStackProps } from "./CloudmillStack.js";
export { STACK_OUTPUTS, stackNameOf } from "../lib/core/stack.js";
export { PipelineMonitoring, BUDGET_THRESHOLDS, type PipelineMonitoringProps } from "./PipelineMonitoring.js";
export { WorkerFleet, WORKER_STOP_TIMEOUT, type WorkerFleetProps } from "./WorkerFleet.js";
export { readCloudmillContext, DEFAULT_LAB, CONTEXT_KEYS, type CloudmillContext, type ContextKey } from "./context.js";
export { roleEnvironment, serviceName, type EnvValues } from "./environment.js";
export {
  CloudmillConfigError,
  resolvePipelineConfig,
  LAB_TAG_KEY,
  LAB_NAME_PATTERN,
  BUDGET_SCOPES,
  LOG_LEVELS,
  type CloudmillPipelineProps,
  type PipelineConfig,
  type BudgetScope,
  type LogLevel,
} from "./props.js";
