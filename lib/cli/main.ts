/** The CLI: assembles the commands; each lives in its own file. */
import { Command, CommanderError } from "commander";
import { cancelCommand } from "./commands/cancel.js";
import { devCommand } from "./commands/dev.js";
import { fleetCommand } from "./commands/fleet.js";
import { jobsCommand } from "./commands/jobs.js";
import { opsCommand } from "./commands/ops.js";
import { resultCommand } from "./commands/result.js";
import { reportCommand } from "./commands/report.js";
import { estimateCommand } from "./commands/estimate.js";
import { retryCommand } from "./commands/retry.js";
import { runCommand } from "./commands/run.js";
import { statusCommand } from "./commands/status.js";
import { submitCommand } from "./commands/submit.js";
import { waitCommand } from "./commands/wait.js";
import { handleError, usageErrorLine } from "./handleError.js";
import type { CliIO } from "./io.js";
import { VERSION } from "../core/version.js";

export const buildProgram = (io: CliIO): Command => {
  const program = new Command("cloudmill")
    .description("map/reduce over files too big for one machine: here, on an emulated AWS, or on your lab's AWS")
    .version(VERSION);
  const output = (cmd: Command, name: string): Command => {
    // Help shows a default as typed (`--port (default: 4566)`), not as commander's JSON ("4566").
    for (const option of cmd.options)
      if (typeof option.defaultValue === "string" && option.defaultValueDescription === undefined)
        option.defaultValueDescription = option.defaultValue;
    return cmd.exitOverride().configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
      outputError: (s) => void io.stderr.write(usageErrorLine(s, name)),
    });
  };
  output(program, "cloudmill");
  const cloud = [
    submitCommand(io),
    statusCommand(io),
    waitCommand(io),
    resultCommand(io),
    reportCommand(io),
    estimateCommand(io),
    jobsCommand(io),
    cancelCommand(io),
    retryCommand(io),
    fleetCommand(io),
  ];
  for (const cmd of [runCommand(io), devCommand(io), opsCommand(io), ...cloud]) {
    program.addCommand(output(cmd, `cloudmill ${cmd.name()}`));
  }
  return program;
};

/** Runs the CLI with these arguments (without `node cloudmill`); resolves to the exit code. */
export const runCli = async (argv: readonly string[], io: CliIO): Promise<number> => {
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: "user" });
    return 0;
  } catch (err) {
    if (
      err instanceof CommanderError &&
      (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help")
    )
      return 0;
    return handleError(err, io);
  }
};
