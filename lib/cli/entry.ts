/** What bin/cloudmill.js needs, in one module: the entry of the CLI's bundle (infra/bundling.ts). */
export { runCli } from "./main.js";
export { processIO } from "./io.js";
