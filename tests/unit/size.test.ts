import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { parseSize, formatSize } from '../../electron/shared/size.js';
import { SpindleError } from '../../electron/shared/errors.js';

test('parseSize reads plain bytes and 1024-based units', () => {
  const cases: Array<[string, number]> = [
    ['4096', 4096],
    ['512B', 512],
    ['1K', 1024],
    ['1k', 1024],
    ['1KiB', 1024],
    ['64M', 64 << 20],
    ['64MiB', 64 << 20],
    ['10G', 10 * 2 ** 30],
    ['10 GiB', 10 * 2 ** 30],
    ['10g', 10 * 2 ** 30],
    ['2T', 2 * 2 ** 40],
    ['1TiB', 2 ** 40],
    ['1.5G', 1.5 * 2 ** 30],
    ['0.5K', 512],
    [' 8M ', 8 << 20],
  ];
  for (const [text, bytes] of cases) assert.equal(parseSize(text), bytes, text);
});

test('parseSize refuses bad input with a sentence', () => {
  const bad: Array<[string, RegExp]> = [
    ['', /not a size/],
    ['abc', /not a size/],
    ['-1G', /not a size/],
    ['10 X', /unknown unit 'X'/],
    ['10GB', /ambiguous.*G or GiB/],
    ['10mb', /ambiguous/],
    ['0', /zero/],
    ['0G', /zero/],
    ['1.3', /whole number of bytes/],
    ['1e9', /not a size/],
    ['5 parsecs', /unknown unit 'parsecs'/],
    ['10G5', /not a size/],
    ['99999999P', /too large/],
    ['1,5G', /not a size/],
  ];
  for (const [text, re] of bad) {
    assert.throws(
      () => parseSize(text),
      (e: unknown) => e instanceof SpindleError && e.code === 'INVALID_ARGUMENT' && re.test(e.message),
      text,
    );
  }
});

test('formatSize prints 1024-based units with at most one decimal', () => {
  assert.equal(formatSize(0), '0 B');
  assert.equal(formatSize(512), '512 B');
  assert.equal(formatSize(1024), '1 KiB');
  assert.equal(formatSize(1536), '1.5 KiB');
  assert.equal(formatSize(10 * 2 ** 30), '10 GiB');
  assert.equal(formatSize(2 ** 40 + 2 ** 39), '1.5 TiB');
  assert.equal(formatSize(274877906944), '256 GiB');
});

test('formatSize and parseSize round-trip whole units', () => {
  for (const bytes of [1024, 3 << 20, 7 * 2 ** 30, 2 ** 40]) assert.equal(parseSize(formatSize(bytes).replace(' ', '')), bytes);
});
