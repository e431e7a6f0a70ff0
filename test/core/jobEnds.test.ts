/** A worker's cached view of which jobs have ended: what it asks, and when it asks again. */
import { describe, expect, it } from "vitest";
import { cachedJobEnds } from "../../lib/core/pipeline/jobEnds.js";

describe("cachedJobEnds", () => {
  const setUp = (ended: Set<string>) => {
    let now = 1_000;
    const asked: string[] = [];
    const ends = cachedJobEnds(
      async (jobId) => {
        asked.push(jobId);
        return ended.has(jobId);
      },
      5_000,
      () => now,
    );
    return { ends, asked, tick: (ms: number) => void (now += ms) };
  };

  it("believes a running job for the recheck time, then asks again", async () => {
    const ended = new Set<string>();
    const { ends, asked, tick } = setUp(ended);
    expect(await ends.ended("a")).toBe(false);
    ended.add("a");
    tick(4_999);
    expect(await ends.ended("a")).toBe(false);
    tick(1);
    expect(await ends.ended("a")).toBe(true);
    expect(asked).toEqual(["a", "a"]);
  });

  it("keeps an end for good, and shares one check among asks made at once", async () => {
    const { ends, asked, tick } = setUp(new Set(["b"]));
    expect(await Promise.all([ends.ended("b"), ends.ended("b"), ends.ended("b")])).toEqual([true, true, true]);
    tick(3_600_000);
    expect(await ends.ended("b")).toBe(true);
    expect(asked).toEqual(["b"]);
  });

  it("takes an end this worker marks at once, even over a check that was still running", async () => {
    const { ends, asked } = setUp(new Set());
    expect(await ends.ended("c")).toBe(false);
    ends.markEnded("c");
    expect(await ends.ended("c")).toBe(true);
    const racing = ends.ended("d");
    ends.markEnded("d");
    expect(await racing).toBe(true);
    expect(await ends.ended("d")).toBe(true);
    expect(asked).toEqual(["c", "d"]);
  });

  it("does not keep a failed check", async () => {
    let fail = true;
    const ends = cachedJobEnds(async () => {
      if (fail) throw new Error("S3 unreachable");
      return false;
    }, 5_000);
    await expect(ends.ended("e")).rejects.toThrow("S3 unreachable");
    fail = false;
    expect(await ends.ended("e")).toBe(false);
  });
});
