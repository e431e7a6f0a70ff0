/** Running and backup markers name their run in their key; the layout is docs/design.md's. */
import { describe, expect, it } from "vitest";
import { backupKey, backupWonKey, parseBackupKey, parseRunningKey, partKey, runningKey, raisesReducerEvent } from "../../lib/core/keys.js";

describe("marker keys", () => {
  it("keep a job's first run's layout and add .g<n> for a resumed run's", () => {
    expect(runningKey("j-1", 12)).toBe("_work/j-1/running/0000012.running.json");
    expect(runningKey("j-1", 12, 3)).toBe("_work/j-1/running/0000012.g3.running.json");
    expect(backupKey("j-1", 12)).toBe("_work/j-1/backups/0000012.json");
    expect(backupKey("j-1", 12, 3)).toBe("_work/j-1/backups/0000012.g3.json");
    expect(backupWonKey("j-1", 12, 3)).toBe("_work/j-1/backups/0000012.g3.won.json");
  });

  it("parse back to their task and run, and nothing else parses", () => {
    expect(parseRunningKey("_work/j-1/running/0000012.running.json")).toEqual({ jobId: "j-1", index: 12, generation: 0 });
    expect(parseRunningKey("_work/j-1/running/0000012.g3.running.json")).toEqual({ jobId: "j-1", index: 12, generation: 3 });
    expect(parseRunningKey("_work/j-1/running/0000012.gx.running.json")).toBeUndefined();
    expect(parseRunningKey("_work/j-1/parts/0000012.part.json")).toBeUndefined();
    expect(parseBackupKey("j-1", "_work/j-1/backups/0000012.json")).toEqual({ index: 12, generation: 0, won: false });
    expect(parseBackupKey("j-1", "_work/j-1/backups/0000012.g3.won.json")).toEqual({ index: 12, generation: 3, won: true });
    expect(parseBackupKey("j-1", "_work/j-2/backups/0000012.json")).toBeUndefined();
    expect(parseBackupKey("j-1", "_work/j-1/backups/notes.txt")).toBeUndefined();
  });

  it("wake the reducer in every run, as the stack's notification filter (suffix .running.json) does; parts raise no event", () => {
    expect(raisesReducerEvent("_work/j-1/running/0000012.g3.running.json")).toBe(true);
    expect(raisesReducerEvent("_work/j-1/backups/0000012.g3.json")).toBe(false);
    // Workers name their parts to the reducer (partNotices.ts).
    expect(raisesReducerEvent(partKey("j-1", 12))).toBe(false);
  });
});
