import { ROLE_ENV, type EnvName, type Role } from "../lib/core/constants.js";
import { kebabCase } from "../lib/core/kebabCase.js";

/**
 * A value for every environment variable the stack sets; each role picks its own from it.
 * CLOUDMILL_OPS_MODULES differs by where a role's code lives (/var/task in Lambda, /app in the worker image).
 */
export type EnvValues = Readonly<Record<Exclude<EnvName, "POWERTOOLS_SERVICE_NAME">, string>>;

/** The Powertools service name a role logs under, in kebab case: `cloudmill-dead-letters`. */
export const serviceName = (role: Role): string => `cloudmill-${kebabCase(role)}`;

/**
 * Exactly the variables `role` reads (ROLE_ENV), no more: the stack hands each function and the
 * worker container this map; test/infra/environment.test.ts feeds the synthesized one to each
 * role's reader.
 */
export const roleEnvironment = <R extends Role>(role: R, values: RoleEnvValues<R>): Record<string, string> => {
  const all = { ...values, POWERTOOLS_SERVICE_NAME: serviceName(role) } as Readonly<Record<EnvName, string>>;
  return Object.fromEntries(ROLE_ENV[role].map((name: EnvName) => [name, all[name]]));
};

/** A value for each variable one role reads. */
export type RoleEnvValues<R extends Role> = Readonly<Record<Exclude<(typeof ROLE_ENV)[R][number], "POWERTOOLS_SERVICE_NAME">, string>>;
