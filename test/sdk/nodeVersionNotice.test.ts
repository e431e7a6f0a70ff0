/**
 * A script using `cloudmill/sdk` on Node 20 does not print the AWS SDK's nine-line notice that its
 * 2027 releases need Node 22 (cloudmill supports Node ≥ 20.19), leaves its environment as it
 * was, and still shows every other warning. Runs the compiled dist/ (`npm run build`) in a child
 * process, with Node's warnings shown as a user's shell shows them.
 */
import path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { runProcess } from "../helpers/processes.js";
import { childEnv } from "./support.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const SDK = pathToFileURL(path.join(ROOT, "dist/lib/sdk/index.js")).href;
const SWITCH = "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED";
/** The AWS SDK gives it on Node releases before 22. */
const NOTICED = Number(process.versions.node.split(".")[0]) < 22;

/** Connects (which makes the clients; nothing listens at the endpoint, and nothing is sent), then warns of its own. */
const SCRIPT = `
import { Cloudmill } from ${JSON.stringify(SDK)};
const mill = new Cloudmill({ endpoint: "http://127.0.0.1:1" }, {});
await mill.target();
process.emitWarning("a warning of the script's own");
console.log(JSON.stringify({ switch: process.env.${SWITCH} ?? null }));
mill.close();
`;

const run = (env: Record<string, string> = {}) =>
  runProcess(process.execPath, ["--input-type=module", "-e", SCRIPT], {
    cwd: ROOT,
    // Node's warnings shown (childEnv turns them off), and no switch of the caller's unless given.
    env: { ...childEnv(), NODE_NO_WARNINGS: "", ...env },
  });

describe("the AWS SDK's Node version notice", () => {
  it("is not printed by a script that uses the SDK; its environment is as it was and its own warning shows", async () => {
    const r = await run();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/NodeVersionSupportWarning/);
    expect(r.stderr).toMatch(/Warning: a warning of the script's own/);
    expect(JSON.parse(r.stdout)).toEqual({ switch: null });
  });

  it.skipIf(!NOTICED)("is printed once when the caller asks for it (the switch set to false is theirs)", async () => {
    const r = await run({ [SWITCH]: "false" });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.match(/NodeVersionSupportWarning/g)).toHaveLength(1);
    expect(JSON.parse(r.stdout)).toEqual({ switch: "false" });
  });
});
