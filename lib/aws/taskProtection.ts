/**
 * ECS task scale-in protection, held while any chunk is in progress so that scale-in never
 * stops a task mid-chunk. Uses the ECS agent's endpoint (ECS_AGENT_URI), as AWS documents:
 * PUT $ECS_AGENT_URI/task-protection/v1/state {"ProtectionEnabled": bool, "ExpiresInMinutes": n}.
 */
import type { Logger } from "../core/log.js";

export interface TaskProtection {
  /** Called when a task starts; resolves once protection is held (or asking for it failed). */
  acquire(): Promise<void>;
  /** Called when a task ends. */
  release(): Promise<void>;
}

export const noProtection: TaskProtection = { acquire: async () => {}, release: async () => {} };

/** What the agent answers besides the protection taken (only the fields read here). */
interface AgentAnswer {
  readonly error?: { readonly Code?: string };
  readonly failure?: { readonly Reason?: string };
}

/** ECS answers that asking again would not change (any other is asked again, as a 5xx is). */
const REFUSED_FOR_GOOD = new Set(["AccessDeniedException", "InvalidParameterException", "ClientException", "TASK_NOT_VALID", "MISSING"]);

/** Longest wait before asking the agent again. */
const MAX_RETRY_MS = 5 * 60_000;

export interface EcsTaskProtectionOptions {
  /** How long the agent holds protection unless told again (its ExpiresInMinutes). Default 120. */
  readonly expiresInMinutes?: number;
  /** Idle time before protection is given up: a worker between back-to-back chunks keeps it. Default 2 s; 0: at once. */
  readonly idleMs?: number;
  /** Wait before a failed request (5xx, 429, no answer) is made again, doubling up to 5 minutes. Default 15 s. */
  readonly retryMs?: number;
}

/**
 * Reference-counted protection through the ECS agent. Failures are logged, never fatal, and tried
 * again until the agent knows the wanted state: a release it never took would keep an idle
 * instance running (and billed) until protection expired. Held protection is renewed at half its
 * expiry, so that a worker busy for longer than it is never scaled in mid-chunk.
 */
export const ecsTaskProtection = (agentUri: string, log: Logger, options: EcsTaskProtectionOptions = {}): TaskProtection => {
  const expiresInMinutes = options.expiresInMinutes ?? 120;
  const idleMs = options.idleMs ?? 2000;
  const retryMs = options.retryMs ?? 15_000;
  let holders = 0;
  /** Protection asked for last (true) or given up (false), whether or not the agent took it. */
  let held = false;
  let chain: Promise<void> = Promise.resolve();
  let idle: NodeJS.Timeout | undefined;
  let retry: NodeJS.Timeout | undefined;
  let renew: NodeJS.Timeout | undefined;

  /** Failed requests in a row: the wait before the next doubles with each. */
  let failures = 0;
  /** "taken", "again" (5xx, 429, throttled, no answer: worth asking again) or "refused" (it would be refused again). */
  const put = async (enabled: boolean): Promise<"taken" | "again" | "refused"> => {
    try {
      const res = await fetch(`${agentUri}/task-protection/v1/state`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(enabled ? { ProtectionEnabled: true, ExpiresInMinutes: expiresInMinutes } : { ProtectionEnabled: false }),
        signal: AbortSignal.timeout(5000),
      });
      // The agent passes ECS's answer on: an error keeps ECS's status (throttling is a 400), and
      // a task ECS would not update is a 200 with a failure.
      const body = (await res.json().catch(() => undefined)) as AgentAnswer | undefined;
      const code = body?.error?.Code ?? body?.failure?.Reason;
      if (res.ok && code === undefined) return "taken";
      const again = res.status >= 500 || res.status === 429 || (code !== undefined && !REFUSED_FOR_GOOD.has(code));
      log.warn(again ? "task protection request refused; will ask again" : "task protection request refused", {
        enabled,
        status: res.status,
        ...(code !== undefined ? { code } : {}),
      });
      return again ? "again" : "refused";
    } catch (err) {
      log.warn("task protection request failed; will ask again", { enabled, error: (err as Error).message });
      return "again";
    }
  };

  /** Tells the agent `enabled`, after any request in flight; asks again later while it is still what is wanted. */
  const tell = (enabled: boolean): Promise<void> => {
    clearTimeout(retry);
    chain = chain.then(async () => {
      if (held !== enabled) return;
      const answer = await put(enabled);
      failures = answer === "again" ? failures + 1 : 0;
      if (answer === "again" && held === enabled) {
        const wait = Math.min(MAX_RETRY_MS, retryMs * 2 ** (failures - 1));
        retry = setTimeout(() => void (held === enabled && tell(enabled)), wait).unref();
      }
    });
    return chain;
  };

  return {
    acquire() {
      holders++;
      clearTimeout(idle);
      if (held) return chain;
      held = true;
      renew = setInterval(() => void tell(true), (expiresInMinutes * 60_000) / 2).unref();
      return tell(true);
    },
    release() {
      if (--holders > 0) return chain;
      clearTimeout(idle);
      const giveUp = (): Promise<void> => {
        if (holders > 0 || !held) return chain;
        held = false;
        clearInterval(renew);
        return tell(false);
      };
      if (idleMs === 0) return giveUp();
      idle = setTimeout(() => void giveUp(), idleMs).unref();
      return Promise.resolve();
    },
  };
};
