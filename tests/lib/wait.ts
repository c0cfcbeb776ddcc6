// The one way a test waits: for a condition or a promise, with a deadline and a message that says
// what it waited for. Nothing in the suite waits without one (a hang becomes a failure that names
// its cause, and a slow machine gets a generous deadline rather than a flaky fixed sleep).

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface WaitOptions {
  /** How long before giving up; generous: the suite runs on a loaded 2-core machine. */
  timeoutMs: number;
  /** What is awaited, in words: the failure reads "timed out after N ms waiting for <what>". */
  what: string;
  /** Poll interval (default 25 ms). */
  intervalMs?: number;
  /** Appended to the failure: the state that shows why it did not happen. */
  detail?: () => string | Promise<string>;
}

async function timeoutError(opts: WaitOptions): Promise<Error> {
  let detail = '';
  try {
    detail = opts.detail ? `\n${await opts.detail()}` : '';
  } catch (err) {
    detail = `\n(detail failed: ${(err as Error).message})`;
  }
  return new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${detail}`);
}

/**
 * Polls `cond` until it returns a truthy value (returned) or the deadline passes (throws, naming
 * `what`). A `cond` that throws fails the wait at once with its error.
 */
export async function waitFor<T>(cond: () => T | Promise<T>, opts: WaitOptions): Promise<Exclude<T, false | null | undefined | 0 | ''>> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v as Exclude<T, false | null | undefined | 0 | ''>;
    if (Date.now() >= deadline) throw await timeoutError(opts);
    await sleep(opts.intervalMs ?? 25);
  }
}

/** Awaits `p` for at most `timeoutMs`; afterwards rejects, naming `what`. */
export async function within<T>(p: Promise<T>, opts: Omit<WaitOptions, 'intervalMs'>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => void timeoutError(opts).then(rej), opts.timeoutMs);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
