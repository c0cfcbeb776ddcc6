import { SpindleError } from '../shared/errors.js';

/** `{code, message}` for any thrown value (the router already maps to SpindleError). */
export function toApiErrorLike(err: unknown): { code: string; message: string } {
  if (err instanceof SpindleError) return { code: err.code, message: err.message };
  return { code: 'INTERNAL', message: `Something went wrong inside Spindle: ${(err as Error)?.message ?? String(err)}` };
}
