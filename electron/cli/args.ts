// parseArgs with every mistake turned into one INVALID_ARGUMENT sentence (exit code 2, one line).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SpindleError } from '../errors.js';

export function parseCommandArgs<T extends ParseArgsConfig['options']>(argv: string[], options: T, usage: string) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0]!.replace(/\.?$/, '.');
    throw new SpindleError('INVALID_ARGUMENT', `${msg} Usage: ${usage}`);
  }
}
