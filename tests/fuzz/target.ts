// One shape for every property-based target, so the test suite (a bounded number of cases) and
// `npm run fuzz` (long runs with a time budget) execute the very same property code.
import fc from 'fast-check';

/** Counters a property may bump to show the generator reached the deep paths. */
export type FuzzStats = Record<string, number>;

export interface FuzzTarget<C = unknown> {
  name: string;
  /** Which test suite runs the bounded version (native needs the addon and real sockets). */
  suite: 'unit' | 'native';
  /** Cases the test suite runs. */
  bounded: number;
  /** Fixed seed for the suite (reproducible); the fuzz script uses fresh seeds. */
  seed?: number;
  setup?(): Promise<C> | C;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each target draws its own value type
  property(ctx: C, stats: FuzzStats): fc.IRawProperty<any, boolean>;
  /** Assertions over the whole run (e.g. enough cases reached the block layer). */
  after?(ctx: C, runs: number, stats: FuzzStats): Promise<void> | void;
  teardown?(ctx: C): Promise<void> | void;
}

export interface RunOptions {
  numRuns: number;
  seed?: number;
  /** Stop (without failing) after this long; the cases run so far count. */
  timeLimitMs?: number;
}

export interface RunReport {
  name: string;
  runs: number;
  seed: number;
  ms: number;
  stats: FuzzStats;
}

/** Runs a target; throws fast-check's report (seed, path, counterexample) when a case fails. */
export async function runTarget<C>(target: FuzzTarget<C>, opts: RunOptions): Promise<RunReport> {
  const stats: FuzzStats = {};
  const ctx = (await target.setup?.()) as C;
  const started = performance.now();
  try {
    const seed = opts.seed ?? target.seed ?? Date.now() ^ (Math.random() * 0x7fffffff);
    const details = await fc.check(target.property(ctx, stats), {
      numRuns: opts.numRuns,
      seed,
      ...(opts.timeLimitMs ? { interruptAfterTimeLimit: opts.timeLimitMs, markInterruptAsFailure: false } : {}),
    });
    if (details.failed) {
      const cause = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
      throw new Error(`${target.name}: ${fc.defaultReportMessage(details)}\nError: ${cause}`);
    }
    await target.after?.(ctx, details.numRuns, stats);
    return { name: target.name, runs: details.numRuns, seed, ms: Math.round(performance.now() - started), stats };
  } finally {
    await target.teardown?.(ctx);
  }
}
