// Benchmark bookkeeping: medians, ratios, and writing JSON + markdown into bench/results/.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export const ratio = (a: number, b: number): number => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : NaN);

/** Fixed-precision number for tables; '–' for what could not be measured. */
export const fmt = (x: number, digits = 1): string => (Number.isFinite(x) ? x.toFixed(digits) : '–');

export function markdownTable(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

// Read when the benchmark process starts: machineInfo() runs when the results are written, by which
// time the load average is the benchmark's own.
const loadavgAtStart = loadavg();

/** Where the machine stood when the numbers were taken: a shared or loaded machine skews everything. */
export function machineInfo(): Record<string, unknown> {
  const sh = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).trim();
    } catch {
      return '?';
    }
  };
  return {
    kernel: sh('uname', ['-r']),
    cpu: cpus()[0]?.model,
    cpus: cpus().length,
    loadavgAtStart,
    loadavgAtEnd: loadavg(),
    qemu: sh('qemu-storage-daemon', ['--version']).split('\n')[0],
    node: process.version,
    commit: sh('git', ['rev-parse', '--short', 'HEAD']),
  };
}

const here = dirname(fileURLToPath(import.meta.url));
/** bench/results of this checkout, from tests/bench/lib or dist/tests/bench/lib. */
export const resultsDir = (): string =>
  resolve(here, ...(here.includes(join('dist', 'tests')) ? ['..', '..', '..', '..'] : ['..', '..', '..']), 'bench', 'results');

/** Writes NAME-STAMP.json and .md plus NAME-latest.json/.md; returns the paths written. */
export function saveResults(name: string, json: unknown, markdown: string): string[] {
  const dir = resultsDir();
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/Z$/, '');
  const files: string[] = [];
  for (const base of [`${name}-${stamp}`, `${name}-latest`]) {
    writeFileSync(join(dir, `${base}.json`), JSON.stringify(json, null, 2) + '\n');
    writeFileSync(join(dir, `${base}.md`), markdown.endsWith('\n') ? markdown : markdown + '\n');
    files.push(join(dir, `${base}.json`), join(dir, `${base}.md`));
  }
  return files;
}

export interface BenchArgs {
  quick: boolean;
  reps: number;
  runtimeSec: number;
  /** `--only NAME`: one side of a comparison. */ only?: string;
}

/** `--quick` (short runs, one repetition: proves the benchmark works), `--reps N`, `--runtime S`, `--only NAME` (one of `onlyChoices`). */
export function benchArgs(
  argv: string[],
  defaults: { reps: number; runtimeSec: number; quickRuntimeSec: number; onlyChoices?: string[] },
): BenchArgs {
  const quick = argv.includes('--quick');
  const num = (flag: string): number | undefined => {
    const i = argv.indexOf(flag);
    if (i < 0) return undefined;
    const v = Number(argv[i + 1]);
    if (!Number.isFinite(v) || v <= 0) throw new Error(`${flag} needs a positive number, got ${argv[i + 1]}`);
    return v;
  };
  const valued = ['--reps', '--runtime', ...(defaults.onlyChoices ? ['--only'] : [])];
  const known = new Set(['--quick', ...valued]);
  for (let i = 0; i < argv.length; i++) {
    if (!known.has(argv[i]!)) throw new Error(`unknown argument ${argv[i]} (known: ${[...known].join(', ')})`);
    if (valued.includes(argv[i]!)) i++;
  }
  const oi = argv.indexOf('--only');
  const only = oi >= 0 ? argv[oi + 1] : undefined;
  if (oi >= 0 && !defaults.onlyChoices?.includes(only ?? ''))
    throw new Error(`--only takes one of ${defaults.onlyChoices?.join(', ')}, not ${only}`);
  return {
    quick,
    reps: num('--reps') ?? (quick ? 1 : defaults.reps),
    runtimeSec: num('--runtime') ?? (quick ? defaults.quickRuntimeSec : defaults.runtimeSec),
    only,
  };
}

/**
 * Puts `markdown` into the checkout's README between `<!-- bench:NAME -->` and
 * `<!-- /bench:NAME -->`, with the result file it came from; false (README untouched) when the
 * markers are missing. Only full runs do this: a --quick run is a smoke test, not a figure.
 */
export function updateReadme(name: string, markdown: string, resultFile: string): boolean {
  const readme = resolve(resultsDir(), '..', '..', 'README.md');
  if (!existsSync(readme)) return false;
  const text = readFileSync(readme, 'utf8');
  const open = `<!-- bench:${name} -->`;
  const close = `<!-- /bench:${name} -->`;
  const a = text.indexOf(open);
  const b = text.indexOf(close);
  if (a < 0 || b < a) return false;
  // The result's own title becomes a sentence: the README has its own headings.
  const body = markdown.replace(/^# (.*)\n/, (_m, title: string) => `${title}, from \`bench/results/${basename(resultFile)}\`:\n`);
  writeFileSync(readme, `${text.slice(0, a + open.length)}\n\n${body.trim()}\n\n${text.slice(b)}`);
  return true;
}
