/** What cloudmill knows about EC2 instance types offline: the vCPUs a size name implies. */

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
