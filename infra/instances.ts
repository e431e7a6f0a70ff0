/**
 * What the construct needs to know about EC2 instance types offline (no DescribeInstanceTypes at synth):
 * whether a type is ARM64 (Graviton), and how many vCPUs its size name implies.
 */

/** Graviton families carry a `g` after the generation digit (m7g, c6gn, is4gen); `a1` is the exception. */
const GRAVITON = /^(?:a1|[a-z]+\d+[a-z-]*g[a-z-]*)\.[a-z0-9]+$/;
const WELL_FORMED = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;

/** True when `instanceType` names an ARM64 (Graviton) instance type, e.g. `m7g.large`. */
export const isArm64InstanceType = (instanceType: string): boolean => WELL_FORMED.test(instanceType) && GRAVITON.test(instanceType);

/**
 * vCPUs implied by an instance size, or undefined when the size does not say (e.g. `metal`, `nano`).
 * The figures are what m, c and r families have; burstable t4g sizes have at least as many,
 * so a worker sized from them always fits.
 */
export const vcpusOfSize = (instanceType: string): number | undefined => {
  const size = instanceType.split(".")[1] ?? "";
  if (size === "small" || size === "medium") return 1;
  if (size === "large") return 2;
  if (size === "xlarge") return 4;
  const m = /^(\d+)xlarge$/.exec(size);
  return m ? 4 * Number(m[1]) : undefined;
};
