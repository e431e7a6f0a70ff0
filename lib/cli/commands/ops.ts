/** `cloudmill ops`: the registered ops, their formats and params. */
import { Command } from "commander";
import { OpRegistry } from "../../core/ops/registry.js";
import { loadOpsModule } from "../../local/opModules.js";
import type { CliIO } from "../io.js";
import { collect } from "../options.js";

export const opsCommand = (io: CliIO): Command =>
  new Command("ops")
    .description("list the ops a job can run")
    .option("--ops <module>", "also load user ops from a module, repeatable", collect)
    .action(async (flags: { ops?: string[] }) => {
      const registry = new OpRegistry();
      for (const m of flags.ops ?? []) await loadOpsModule(m, registry);
      for (const op of registry.all()) {
        io.stdout.write(`${op.name}  (${op.formats.join(", ")})\n  ${op.description}\n`);
        for (const p of op.paramsHelp) io.stdout.write(`    --param ${p}\n`);
      }
    });
