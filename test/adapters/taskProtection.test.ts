/**
 * ECS task scale-in protection through a fake ECS agent: held across back-to-back chunks, given
 * up once idle, asked again until the agent takes it (a release it never took would keep an idle
 * instance billed until protection expired), and renewed while a worker stays busy.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../lib/core/log.js";
import { ecsTaskProtection } from "../../lib/aws/taskProtection.js";
import { startFakeEcsAgent, waitFor, type FakeEcsAgent } from "../helpers/devCloud.js";

let agent: FakeEcsAgent;
beforeEach(async () => {
  agent = await startFakeEcsAgent();
});
afterEach(async () => agent.close());

/** What the agent was asked, in order: E (enable) or D (disable), lower case when it refused. */
const asked = (): string =>
  agent.requests.map((r) => (r.body.ProtectionEnabled ? "E" : "D")[r.refused ? "toLowerCase" : "toUpperCase"]()).join("");

describe("ECS task protection", () => {
  it("is held across back-to-back tasks and given up once the worker is idle", async () => {
    const p = ecsTaskProtection(agent.uri, silentLogger, { idleMs: 300 });
    await p.acquire();
    await p.release();
    await p.acquire();
    await p.acquire();
    await p.release();
    await p.release();
    await waitFor("protection given up", () => (asked() === "ED" ? true : undefined), 10_000, 20);
    expect(agent.requests[0]!.body).toEqual({ ProtectionEnabled: true, ExpiresInMinutes: 120 });
    expect(agent.requests[1]!.body).toEqual({ ProtectionEnabled: false });
  });

  it("with no idle time, is given up after each task and asked for again by the next", async () => {
    const p = ecsTaskProtection(agent.uri, silentLogger, { idleMs: 0 });
    await p.acquire();
    await p.release();
    await p.acquire();
    await p.release();
    expect(asked()).toBe("EDED");
  });

  it("a release the agent refused is asked again until it takes", async () => {
    const p = ecsTaskProtection(agent.uri, silentLogger, { idleMs: 10, retryMs: 50 });
    await p.acquire();
    agent.refusing = 2;
    await p.release();
    await waitFor("the release taken", () => (asked() === "EddD" ? true : undefined), 10_000, 20);
  });

  it("an enable the agent refused is asked again while a task holds it, and not once it is released", async () => {
    const p = ecsTaskProtection(agent.uri, silentLogger, { idleMs: 10, retryMs: 50 });
    agent.refusing = 1;
    await p.acquire();
    await waitFor("the enable taken", () => (asked() === "eE" ? true : undefined), 10_000, 20);
    await p.release();
    await waitFor("the release", () => (asked() === "eED" ? true : undefined), 10_000, 20);
    // Refused, then released before its retry: the retry is dropped, and the release is still made.
    agent.refusing = 1;
    await p.acquire();
    await p.release();
    await waitFor("the second release", () => (asked() === "eEDeD" ? true : undefined), 10_000, 20);
  });

  it("a request refused for good (a 4xx: the role may not, the task is in no service) is not made again and again", async () => {
    const p = ecsTaskProtection(agent.uri, silentLogger, { idleMs: 10, retryMs: 20 });
    agent.refusing = 1;
    agent.refusingStatus = 400;
    agent.refusingBody = { requestID: "r", error: { Arn: "arn:task", Code: "AccessDeniedException", Message: "not authorized" } };
    await p.acquire();
    await p.release();
    // The release goes on as usual; the refused enable was asked once.
    await waitFor("the release", () => (asked() === "eD" ? true : undefined), 10_000, 20);
    await new Promise((r) => setTimeout(r, 200));
    expect(asked()).toBe("eD");
  });

  it("a release ECS throttled (a 400 ThrottlingException, as the agent passes it on) is asked again until it takes", async () => {
    const p = ecsTaskProtection(agent.uri, silentLogger, { idleMs: 10, retryMs: 20 });
    await p.acquire();
    agent.refusing = 2;
    agent.refusingStatus = 400;
    agent.refusingBody = { requestID: "r", error: { Arn: "arn:task", Code: "ThrottlingException", Message: "Rate exceeded" } };
    await p.release();
    await waitFor("the release taken", () => (asked() === "EddD" ? true : undefined), 10_000, 20);
  });

  it("an enable answered 200 with a failure is not held: it is asked again while a task holds it", async () => {
    const p = ecsTaskProtection(agent.uri, silentLogger, { idleMs: 10, retryMs: 20 });
    agent.refusing = 1;
    agent.refusingStatus = 200;
    agent.refusingBody = { requestID: "r", failure: { Arn: "arn:task", Reason: "UNAVAILABLE", Detail: null } };
    await p.acquire();
    await waitFor("the enable taken", () => (asked() === "eE" ? true : undefined), 10_000, 20);
    await p.release();
    await waitFor("the release", () => (asked() === "eED" ? true : undefined), 10_000, 20);
  });

  it("is renewed at half its expiry while a worker stays busy", async () => {
    // 0.005 minutes (300 ms): renewed every 150 ms.
    const p = ecsTaskProtection(agent.uri, silentLogger, { expiresInMinutes: 0.005, idleMs: 10 });
    await p.acquire();
    await waitFor("two renewals", () => (/^E{3,}$/.test(asked()) ? true : undefined), 10_000, 5);
    await p.release();
    await waitFor("the release", () => (asked().endsWith("D") ? true : undefined), 10_000, 5);
    expect(asked()).toMatch(/^E{3,}D$/);
  });
});
