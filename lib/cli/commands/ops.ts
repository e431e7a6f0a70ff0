/**
 * `cloudmill ops`: the ops a job can run. Locally, the built-ins and any `--ops` modules; with
 * --stack or --endpoint, the ops that pipeline runs, each with the digest of its code.
 */
import { Command } from "commander";
import { loadOpsModule } from "../../core/ops/opModules.js";
import { OpRegistry } from "../../core/ops/registry.js";
import { type DeployedOp, listingOf } from "../../core/ops/registryListing.js";
import { usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import type { CliIO } from "../io.js";
import { collect } from "../options.js";

const describe = (io: CliIO, ops: readonly DeployedOp[]): void => {
  for (const op of ops) {
    io.stdout.write(`${op.name}  (${op.formats.join(", ")})  code ${op.digest}\n  ${op.description}\n`);
    for (const p of op.params) io.stdout.write(`    --param ${p}\n`);
  }
};

export const opsCommand = (io: CliIO): Command =>
  withCloudOptions(
    new Command("ops")
      .description("list the ops a job can run (with --stack or --endpoint: the ops that pipeline runs, with their code digests)")
      .option("--ops <module>", "also load user ops from a module, repeatable", collect),
  ).action(async (raw: Record<string, unknown> & { ops?: string[] }) => {
    if (raw["stack"] || raw["endpoint"]) {
      await usingCloudmill(raw, io, async (mill) => {
        const listing = await mill.ops();
        if (!listing) {
          io.stderr.write("cloudmill: this pipeline publishes no op listing (it runs the built-in ops)\n");
          describe(io, listingOf(new OpRegistry()).ops);
        } else describe(io, listing.ops);
      });
      return;
    }
    const registry = new OpRegistry();
    for (const m of raw.ops ?? []) await loadOpsModule(m, registry);
    describe(io, listingOf(registry).ops);
  });
