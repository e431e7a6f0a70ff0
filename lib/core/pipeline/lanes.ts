/**
 * Capacity lanes. A stack with `spot: "per-job"` runs two worker services, each consuming its
 * own task queue: one on on-demand instances (the default lane) and one on spot instances. A
 * job that prefers `cheapest` is queued on the spot lane, every other job on the on-demand one.
 * Its merge, reduce and backup tasks and its resumes follow it there, and its dollars are priced
 * as its lane's instances are bought. A stack of one lane queues every job on it.
 */
import type { Preference } from "../job/spec.js";
import type { TaskQueue } from "../ports.js";
import type { Lanes, PipelineDeps } from "./deps.js";

/** Whether a job that prefers `prefer` runs on the spot lane. */
export const onSpotLane = (deps: Lanes, prefer: Preference | undefined): boolean => prefer === "cheapest" && deps.spotQueue !== undefined;

/** The deps a job's tasks are queued and priced with: its lane's queue and capacity. */
export const inLaneOf = <D extends PipelineDeps & Lanes & { readonly queue?: TaskQueue }>(
  deps: D,
  job: { readonly prefer?: Preference | undefined },
): D => (onSpotLane(deps, job.prefer) ? { ...deps, queue: deps.spotQueue, capacity: "spot" } : deps);
