// One error type for everything a user can see. `message` is the sentence shown to the user;
// `code` is stable for programs and tests; `errno` carries the OS error code when there is one.
export type SpindleErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'IS_DIRECTORY'
  | 'NOT_A_DISK'
  | 'PERMISSION_DENIED'
  | 'DEVICE_MOUNTED'
  | 'DEVICE_BUSY'
  | 'UNSUPPORTED_MODE'
  | 'SIZE_NOT_ALIGNED'
  | 'UNSUPPORTED_FORMAT'
  | 'NO_SPACE'
  | 'IO_ERROR'
  | 'READ_ONLY'
  | 'PROTOCOL_ERROR'
  | 'GUEST_ERROR'
  | 'QEMU_MISSING'
  | 'QEMU_FAILED'
  | 'CONFIG_CORRUPT'
  | 'CONFLICT'
  /** Another VM already has this name (names are unique ignoring case). */
  | 'NAME_TAKEN'
  /** Starting this VM would write an image that is the read-only base of a linked clone. */
  | 'BASE_IN_USE'
  | 'CANCELLED'
  | 'INTERNAL';

export class SpindleError extends Error {
  override name = 'SpindleError';
  constructor(
    readonly code: SpindleErrorCode,
    message: string,
    readonly errno?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  toJSON(): { code: SpindleErrorCode; message: string; errno?: string } {
    return { code: this.code, message: this.message, ...(this.errno ? { errno: this.errno } : {}) };
  }
}

/** The errno name ('ENOENT') of a Node or addon system error, if it is one. */
export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('E') ? code : undefined;
}
