// The one place a thrown value becomes the error a client sees, for every transport (WebSocket,
// Electron IPC, the local socket). A SpindleError goes out with its code and sentence; an OS error
// the user can act on (a missing file, no permission) becomes one; anything else is a bug: it is
// logged with a random id and the client gets "internal error (id …)", never its text.
import { randomBytes } from 'node:crypto';
import type { ApiError } from '../shared/api.js';
import { SpindleError, errnoOf } from '../shared/errors.js';

type BugLog = (id: string, err: unknown) => void;

let logBug: BugLog = (id, err) => console.error(`spindle: internal error ${id}:`, err);

/** Replaces where bugs are logged (stderr by default); returns the previous logger. */
export function setBugLog(log: BugLog): BugLog {
  const prev = logBug;
  logBug = log;
  return prev;
}

/** The SpindleError a thrown value stands for, or undefined when it is a bug. */
export function asUserError(err: unknown): SpindleError | undefined {
  if (err instanceof SpindleError) return err;
  const e = errnoOf(err);
  const message = (err as Error | null)?.message;
  if (typeof message !== 'string') return undefined;
  if (e === 'ENOENT') return new SpindleError('NOT_FOUND', `${message}.`, e, { cause: err });
  if (e === 'EACCES' || e === 'EPERM') return new SpindleError('PERMISSION_DENIED', `${message}.`, e, { cause: err });
  return undefined;
}

/** Turns anything thrown by the backend into the error sent to the client. */
export function toApiError(err: unknown): ApiError {
  const user = asUserError(err);
  if (user) return { code: user.code, message: user.message, ...(user.errno ? { errno: user.errno } : {}) };
  const id = randomBytes(4).toString('hex');
  logBug(id, err);
  return { code: 'INTERNAL', message: `Spindle hit an internal error (id ${id}); the details are in its log.` };
}
