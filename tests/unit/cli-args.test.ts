// electron/cli/args.ts: negative numbers are option values, and parse errors are one sentence.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { parseArgs } from 'node:util';
import { describeParseError, joinNegativeValues, parseCommandArgs, wholeNumber } from '../../electron/cli/args.js';
import { SpindleError } from '../../electron/shared/errors.js';

test('a negative number after a long option becomes its value; nothing else is touched', () => {
  assert.deepEqual(joinNegativeValues(['--queues', '-1', 'x', '--size', '-1.5G', '--port', '-.5']), [
    '--queues=-1',
    'x',
    '--size=-1.5G',
    '--port=-.5',
  ]);
  assert.deepEqual(
    joinNegativeValues(['--socket', '--aio', 'native', '-5']),
    ['--socket', '--aio', 'native', '-5'],
    'only numbers, only after a long option',
  );
  assert.deepEqual(joinNegativeValues(['--', '--queues', '-1']), ['--', '--queues', '-1'], 'nothing after --');
  assert.deepEqual(
    joinNegativeValues(['--json', '-1'], (o) => o !== 'json'),
    ['--json', '-1'],
    'not onto an option that takes no value',
  );
});

test('parse errors: one sentence naming the option (and the value), pointing at --help', () => {
  const opts = { socket: { type: 'string' }, json: { type: 'boolean' } } as const;
  const fail = (argv: string[]): string => {
    try {
      parseCommandArgs(argv, opts, 'spindle export PATH --socket SOCK');
    } catch (e) {
      assert.ok(e instanceof SpindleError && e.code === 'INVALID_ARGUMENT', String(e));
      assert.doesNotMatch(e.message, /\n/);
      return e.message;
    }
    throw new Error(`${argv.join(' ')} parsed`);
  };
  assert.equal(
    fail(['--socket', '--json']),
    "--socket needs a value, and '--json' looks like an option (write --socket=--json if it is the value). See: spindle export --help.",
  );
  assert.equal(fail(['--socket']), '--socket needs a value. See: spindle export --help.');
  assert.equal(fail(['--bogus']), "Unknown option '--bogus'. See: spindle export --help.");
  assert.equal(fail(['--json=yes']), "Option '--json' does not take an argument. See: spindle export --help.");
  assert.equal(parseCommandArgs(['--socket', '-3'], opts, 'export').values.socket, '-3');
  assert.equal(describeParseError(new Error('not from parseArgs'), [], 'x'), null);
  assert.throws(
    () => parseArgs({ args: ['--n', '-1'], options: { n: { type: 'string' } } }),
    /ambiguous/,
    "node's own parser refuses it (why args.ts exists)",
  );
});

test('wholeNumber: the range and the value in the sentence', () => {
  assert.equal(wholeNumber(undefined, '--queues', 1, 16), undefined);
  assert.equal(wholeNumber('16', '--queues', 1, 16), 16);
  for (const bad of ['-1', '0', '17', '1.5', '1e1', '', ' ', '0x4', 'lots']) {
    assert.throws(
      () => wholeNumber(bad, '--queues', 1, 16),
      (e: SpindleError) => e.code === 'INVALID_ARGUMENT' && e.message === `--queues takes a whole number from 1 to 16, not '${bad}'.`,
      bad,
    );
  }
  assert.throws(
    () => wholeNumber('8', '--memory', 32, 1 << 20, ' MiB'),
    /--memory takes a whole number of MiB from 32 to 1048576, not '8'\./,
  );
});
