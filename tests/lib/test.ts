// The suite's `test`, `describe`, `it` and hooks: node:test's, with a deadline on every test and
// hook that does not set its own. Node 20 applies --test-timeout to each file as a whole when the
// runner isolates files (scripts/test.mjs), so without this a hang fails the file but not the test
// that hung; with it, the test that hung fails under its own name and the file goes on.
// Every test file imports from here, never from node:test (tests/unit/test-timeouts.test.ts).
import * as node from 'node:test';

export type { TestContext, SuiteContext } from 'node:test';

/** About ten times the longest test (63 s) on a loaded 2-core machine; SPINDLE_PER_TEST_TIMEOUT_MS overrides. */
export const perTestTimeoutMs = Number(process.env.SPINDLE_PER_TEST_TIMEOUT_MS) || 600_000;

type Args = unknown[];
const isOptions = (a: unknown): a is { timeout?: number } => typeof a === 'object' && a !== null;

// test([name][, options][, fn]): add { timeout } to the options, or insert options before fn.
function withDeadline(args: Args): Args {
  const at = args.findIndex(isOptions);
  if (at >= 0) {
    const opts = args[at] as { timeout?: number };
    return opts.timeout === undefined ? args.map((a, i) => (i === at ? { ...opts, timeout: perTestTimeoutMs } : a)) : args;
  }
  const fnAt = args.findIndex((a) => typeof a === 'function');
  const out = [...args];
  out.splice(fnAt >= 0 ? fnAt : out.length, 0, { timeout: perTestTimeoutMs });
  return out;
}

// hook(fn[, options])
const hookWithDeadline = <H extends (...a: never[]) => unknown>(hook: H): H =>
  ((fn: unknown, opts?: { timeout?: number }) =>
    (hook as unknown as (...a: unknown[]) => unknown)(fn, { timeout: perTestTimeoutMs, ...opts })) as unknown as H;

function wrap<T extends (...a: never[]) => unknown>(fn: T): T {
  const call = fn as unknown as (...a: unknown[]) => unknown;
  const wrapped = (...a: unknown[]) => call(...withDeadline(a));
  for (const variant of ['skip', 'todo', 'only'] as const) {
    const v = (fn as unknown as Record<string, ((...a: unknown[]) => unknown) | undefined>)[variant];
    if (v) Object.assign(wrapped, { [variant]: (...a: unknown[]) => v(...withDeadline(a)) });
  }
  return wrapped as unknown as T;
}

export const test = wrap(node.test);
export const it = wrap(node.it);
// A suite is not given one: its tests and hooks each have theirs (the file has the runner's).
export const describe = node.describe;
export const before = hookWithDeadline(node.before);
export const after = hookWithDeadline(node.after);
export const beforeEach = hookWithDeadline(node.beforeEach);
export const afterEach = hookWithDeadline(node.afterEach);
