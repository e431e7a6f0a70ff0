/** JSON text through a schema, the one way every boundary reads JSON it did not just write. */
import type { z } from "zod";
import { CloudmillError, type ErrorCode } from "./errors.js";

/**
 * Parses `text` with `schema`. Either failure is one CloudmillError with `code`, naming `what`
 * (the object, file or argument) and, for a shape error, the path of the first bad field.
 */
export const parseJsonWith = <S extends z.ZodType>(text: string, schema: S, what: string, code: ErrorCode): z.output<S> => {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CloudmillError(code, `${what}: not valid JSON (${(err as Error).message})`);
  }
  return parseWith(value, schema, what, code);
};

/** A value already parsed (an SDK caller's object) through a schema, failing as parseJsonWith does. */
export const parseWith = <S extends z.ZodType>(value: unknown, schema: S, what: string, code: ErrorCode): z.output<S> => {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new CloudmillError(code, `${what}: ${issue.path.join(".") || "value"}: ${issue.message}`);
  }
  return r.data;
};
