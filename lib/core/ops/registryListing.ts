/**
 * The deployed registry as data: every op's name, code digest, formats and params, stored at
 * `_ops/registry.json` in the output bucket. Clients read it to list the ops a pipeline runs
 * and to refuse a job whose local op differs from the deployed one before uploading anything.
 */
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import { OPS_LISTING_KEY } from "../keys.js";
import { readJsonIfExists, writeJson } from "../pipeline/blobJson.js";
import type { BlobStore } from "../ports.js";
import { opDigest, type OpRegistry } from "./registry.js";
import type { AnyOp } from "./types.js";

export const DeployedOp = z.object({
  name: z.string(),
  digest: z.string(),
  description: z.string(),
  formats: z.array(z.string()),
  params: z.array(z.string()),
});
export type DeployedOp = z.infer<typeof DeployedOp>;

export const OpsListing = z.object({ ops: z.array(DeployedOp) });
export type OpsListing = z.infer<typeof OpsListing>;

export const describeOp = (op: AnyOp): DeployedOp => ({
  name: op.name,
  digest: opDigest(op),
  description: op.description,
  formats: [...op.formats],
  params: [...op.paramsHelp],
});

export const listingOf = (registry: OpRegistry): OpsListing => ({ ops: registry.all().map(describeOp) });

export const publishRegistry = (output: BlobStore, registry: OpRegistry): Promise<void> =>
  writeJson(output, OPS_LISTING_KEY, listingOf(registry));

/** The listing a pipeline published, or undefined when it published none. */
export const readRegistryListing = (output: BlobStore, signal?: AbortSignal): Promise<OpsListing | undefined> =>
  readJsonIfExists(output, OPS_LISTING_KEY, OpsListing, signal);

/**
 * Refuses a local op whose code is not the deployed one: unknown there (UNKNOWN_OP) or another
 * digest (OP_MISMATCH), naming both digests and what to do.
 */
export const checkAgainstDeployed = (local: AnyOp, listing: OpsListing): void => {
  const deployed = listing.ops.find((o) => o.name === local.name);
  if (!deployed) {
    throw new CloudmillError(
      ErrorCode.UNKNOWN_OP,
      `op ${local.name} is not deployed (deployed: ${listing.ops.map((o) => o.name).join(", ")}): ` +
        "serve its module (`cloudmill dev --ops <module>`) and submit again",
      { field: "op" },
    );
  }
  const digest = opDigest(local);
  if (deployed.digest !== digest) {
    throw new CloudmillError(
      ErrorCode.OP_MISMATCH,
      `op ${local.name}: your code is ${digest}, the deployed op is ${deployed.digest}; ` +
        "restart `cloudmill dev --ops <module>` so the workers run your code",
      { field: "op" },
    );
  }
};
