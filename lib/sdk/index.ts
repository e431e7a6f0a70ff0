/** The SDK: a client for a lab's pipeline (or `cloudmill dev`), futures, and helpers to wait on them. */
export { Cloudmill, type CloudmillTarget, type JobParams, type MapOptions, type MapItemsOptions } from "./Cloudmill.js";
export { JobFuture } from "./JobFuture.js";
export { asCompleted, waitAll, type WaitOptions } from "./futures.js";
export { JobFailedError } from "./errors.js";
export { CloudmillError, ErrorCode, type ErrorContext } from "../core/errors.js";
export { STACK_OUTPUTS, stackNameOf } from "../core/stack.js";
export type { DeployedOp, OpsListing } from "../core/ops/registryListing.js";
export type { ItemError, OnItemError, TaskResult } from "../core/ops/defineTask.js";
export { describeFleet, type FleetClients, type FleetTarget } from "./fleet.js";
export type {
  BuiltinResults,
  CloudmillOptions,
  EstimateCalibration,
  EstimateSpec,
  FleetHold,
  FleetInstance,
  FleetLane,
  FleetTask,
  FleetView,
  InstanceMarket,
  JobProgress,
  JobState,
  JobStatus,
  JobSummary,
  PollOptions,
  Reservation,
  ResultOf,
  ResultOptions,
  RetryOptions,
  SubmitOptions,
  SubmitSpec,
  UploadProgress,
  WorkerUsage,
} from "./types.js";
export type { Estimate } from "../core/report/estimate.js";
