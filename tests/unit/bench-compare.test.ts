import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { BenchStartInput } from '../../electron/shared/api.js';
import { variantsOf } from '../../electron/api/bench-api.js';
import { POST_WORKLOADS, checkVariants, regionBytes, rowsToCsv, recordLabel } from '../../electron/host/bench/compare.js';
import { SpindleError } from '../../electron/shared/errors.js';
import { CACHE_MODES, ENGINE_VARIANTS, modeConflict, variantName } from '../../electron/shared/modes.js';

test("the matrix is the post's: write then read at 16k, 64k, 256k and 20M", () => {
  assert.deepEqual(
    POST_WORKLOADS.map((w) => `${w.op} ${recordLabel(w.recordBytes)}`),
    ['write 16k', 'read 16k', 'write 64k', 'read 64k', 'write 256k', 'read 256k', 'write 20M', 'read 20M'],
  );
});

test('variants: native+nowait is its own row by default; explicit variants win', () => {
  const v = (x: unknown) => variantsOf(BenchStartInput.parse(x));
  assert.deepEqual(
    v({ target: { kind: 'scratch' } }).map((x) => `${x.aio}${x.nowait ? '+nowait' : ''}`),
    ['threads', 'native', 'native+nowait', 'io_uring'],
  );
  assert.deepEqual(v({ target: { kind: 'scratch' }, modes: ['io_uring'] }), [{ aio: 'io_uring', nowait: false }]);
  assert.deepEqual(v({ target: { kind: 'scratch' }, variants: [{ aio: 'native', nowait: true }] }), [{ aio: 'native', nowait: true }]);
  assert.throws(() => BenchStartInput.parse({ target: { kind: 'scratch' }, variants: [{ aio: 'posix' }] }));
});

test('one engine variant list: threads, native, native+nowait, io_uring', () => {
  assert.deepEqual(ENGINE_VARIANTS.map(variantName), ['threads', 'native', 'native+nowait', 'io_uring']);
});

test('checkVariants refuses native without O_DIRECT and nowait on other engines', () => {
  assert.throws(
    () => checkVariants([{ aio: 'native', nowait: false }], 'writeback'),
    (e: SpindleError) => e.code === 'UNSUPPORTED_MODE',
  );
  // The comparison asks the one rule (shared/modes.ts) rather than its own copy of it.
  for (const cache of CACHE_MODES) {
    const conflict = modeConflict('native', cache);
    if (conflict)
      assert.throws(
        () => checkVariants([{ aio: 'native', nowait: false }], cache),
        (e: SpindleError) => e.message.startsWith(conflict),
      );
    else checkVariants([{ aio: 'native', nowait: true }], cache);
  }
  assert.throws(() => checkVariants([{ aio: 'io_uring', nowait: true }], 'none'), /variant of aio 'native' only/);
  checkVariants([{ aio: 'threads', nowait: false }], 'writeback');
});

test('regionBytes: whole records, at least one, never past the disk', () => {
  assert.equal(regionBytes(16384, 64 << 20, 1 << 30), 64 << 20);
  assert.equal(regionBytes(20 << 20, 64 << 20, 1 << 30), 60 << 20);
  assert.equal(regionBytes(20 << 20, 1 << 20, 1 << 30), 20 << 20);
  assert.equal(regionBytes(20 << 20, 64 << 20, 30 << 20), 20 << 20);
  assert.equal(regionBytes(20 << 20, 64 << 20, 10 << 20), 0);
});

test('CSV names the variant and carries both units', () => {
  const csv = rowsToCsv([{ mode: 'native', nowait: true, op: 'write', recordBytes: 16384, mbps: 1.5, kbps: 1465, iops: 91, cpuSec: 0.01 }]);
  const [head, row] = csv.trim().split('\n');
  assert.match(head!, /^mode,op,record_bytes,mb_per_s,kib_per_s,iops,backend_cpu_s/);
  assert.match(row!, /^native\+nowait,write,16384,1\.5,1465,91,0\.01,/);
});
