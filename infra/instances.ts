/**
 * What the construct needs to know about EC2 instance types offline (no DescribeInstanceTypes at synth):
 * whether a type is ARM64 (Graviton), and how many vCPUs its size name implies.
 */

/** Graviton families carry a `g` after the generation digit (m7g, c6gn, is4gen); `a1` is the exception. */
const GRAVITON = /^(?:a1|[a-z]+\d+[a-z-]*g[a-z-]*)\.[a-z0-9]+$/;
const WELL_FORMED = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;

/** True when `instanceType` names an ARM64 (Graviton) instance type, e.g. `m7g.large`. */
export const isArm64InstanceType = (instanceType: string): boolean => WELL_FORMED.test(instanceType) && GRAVITON.test(instanceType);

export { vcpusOfSize } from "../lib/core/instanceTypes.js";
