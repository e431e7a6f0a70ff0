/**
 * ECS task scale-in protection, held while any chunk is in progress so that scale-in never
 * stops a task mid-chunk. Uses the ECS agent's endpoint (ECS_AGENT_URI), as AWS documents:
 * PUT $ECS_AGENT_URI/task-protection/v1/state {"ProtectionEnabled": bool, "ExpiresInMinutes": n}.
 */
import type { Logger } from "../core/log.js";

export interface TaskProtection {
  /** Called when the first task starts; resolves once protection is requested. */
  acquire(): Promise<void>;
  /** Called when the last task ends. */
  release(): Promise<void>;
}

export const noProtection: TaskProtection = { acquire: async () => {}, release: async () => {} };

/** Reference-counted protection through the ECS agent; failures are logged, never fatal. */
export const ecsTaskProtection = (agentUri: string, log: Logger, expiresInMinutes = 120): TaskProtection => {
  let holders = 0;
  let chain: Promise<void> = Promise.resolve();
  const set = (enabled: boolean) => {
    chain = chain.then(async () => {
      try {
        const res = await fetch(`${agentUri}/task-protection/v1/state`, {
          method: "PUT",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(enabled ? { ProtectionEnabled: true, ExpiresInMinutes: expiresInMinutes } : { ProtectionEnabled: false }),
          signal: AbortSignal.timeout(5000),
        });
        if (!res.ok) log.warn("task protection request refused", { enabled, status: res.status });
      } catch (err) {
        log.warn("task protection request failed", { enabled, error: (err as Error).message });
      }
    });
    return chain;
  };
  return {
    acquire: () => (holders++ === 0 ? set(true) : chain),
    release: () => (--holders === 0 ? set(false) : chain),
  };
};
