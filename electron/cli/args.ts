// Option parsing for the commands (node:util parseArgs) with every mistake turned into one
// INVALID_ARGUMENT sentence (exit code 2, one line naming the option and the value), and negative
// numbers accepted as option values so the command's own range check can name them.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SpindleError } from '../shared/errors.js';

const NEGATIVE_NUMBER = /^-(\d|\.\d)/;

/**
 * `--memory -5` as `--memory=-5`: parseArgs takes a value starting with '-' for an option and then
 * refuses it as ambiguous. Only long options are joined, and only to a negative number (which no
 * command takes as a positional). `takesValue` (when known) limits it to options that take one.
 */
export function joinNegativeValues(argv: string[], takesValue?: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return out.concat(argv.slice(i));
    const next = argv[i + 1];
    const m = /^--([\w-]+)$/.exec(a);
    if (m && next !== undefined && NEGATIVE_NUMBER.test(next) && (takesValue?.(m[1]!) ?? true)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

/** parseArgs's error as one sentence naming the option (and the value), or null when it is not one. */
export function describeParseError(err: unknown, argv: string[], command: string): SpindleError | null {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) return null;
  const message = (err as Error).message;
  const help = `See: spindle ${command} --help.`;
  const ambiguous = /^Option '(?:-\w, )?(--[\w-]+)(?: <value>)?' argument is ambiguous/.exec(message);
  if (ambiguous) {
    const opt = ambiguous[1]!;
    const value = argv[argv.indexOf(opt) + 1] ?? '';
    return new SpindleError(
      'INVALID_ARGUMENT',
      `${opt} needs a value, and '${value}' looks like an option (write ${opt}=${value} if it is the value). ${help}`,
    );
  }
  const missing = /^Option '(?:-\w, )?(--[\w-]+)(?: <value>)?' argument missing/.exec(message);
  if (missing) return new SpindleError('INVALID_ARGUMENT', `${missing[1]} needs a value. ${help}`);
  // "Unknown option '--bogus'. To specify a positional argument…": the first sentence is the point.
  const first = message
    .split('\n')[0]!
    .replace(/^(.*?[.'"])\s+[A-Z].*$/, '$1')
    .replace(/\.?$/, '.');
  return new SpindleError('INVALID_ARGUMENT', `${first} ${help}`);
}

/** parseArgs (strict, positionals allowed) for `spindle <command>`, failing as describeParseError says. */
export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, command: string) {
  const name = /^spindle ([\w-]+)/.exec(command)?.[1] ?? command;
  const args = joinNegativeValues(argv, (opt) => options[opt]?.type === 'string');
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw describeParseError(err, args, name) ?? err;
  }
}

/** An option's whole-number value within [min, max], or undefined when the option was not given. */
export function wholeNumber(value: string | undefined, option: string, min: number, max: number, unit = ''): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new SpindleError(
      'INVALID_ARGUMENT',
      `${option} takes a whole number${unit ? ` of${unit}` : ''} from ${min} to ${max}, not '${value}'.`,
    );
  }
  return n;
}
