// The IOThread's watch over a full filesystem (electron/dataplane/iothread/space-watch.ts): with writes
// parked it retries them when free space grows, or every few seconds once it looks large enough
// (on a block device, whose space statfs cannot see, every few seconds), says what is missing,
// reports only changes, and stops once nothing is parked. statfs and the disk are scripted here;
// tests/native/enospc-disk-server.test.ts runs it on a real full ext4.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { SpaceWatch, type SpaceStatus } from '../../electron/dataplane/iothread/space-watch.js';

const KiB = 1024;

const HOUR = 3_600_000;

function setup(kind: 'file' | 'block' = 'file', retryMs = HOUR) {
  const fs = { bsize: 4096, bfree: 10, bavail: 0 };
  const disk = {
    parkedRequests: 2,
    parkedBytes: 64 * KiB,
    retries: 0,
    /** What a retry does: by default the writes fit. */
    fits: true,
    async retryParked() {
      this.retries++;
      if (this.fits) {
        this.parkedRequests = 0;
        this.parkedBytes = 0;
      }
      return { retried: 2, parked: this.parkedRequests };
    },
  };
  const reports: SpaceStatus[] = [];
  // A long interval: the test calls tick() itself.
  const watch = new SpaceWatch('/srv/a.img', kind, disk, (s) => reports.push(s), { intervalMs: HOUR, retryMs, statfs: () => ({ ...fs }) });
  return { fs, disk, reports, watch };
}

test('start says what is missing: the parked bytes less the free space an unprivileged user has', () => {
  const { fs, watch } = setup();
  fs.bavail = 4; // 16 KiB
  assert.deepEqual(watch.start(), { parked: 2, parkedBytes: 64 * KiB, freeBytes: 16 * KiB, missingBytes: 48 * KiB });
  assert.equal(watch.watching, true);
  watch.stop();
});

test('no retry while free space stays the same and short; a retry as soon as it grows; stops once nothing is parked', async () => {
  const { fs, disk, reports, watch } = setup();
  watch.start();
  await watch.tick();
  assert.equal(disk.retries, 0, 'nothing changed');
  assert.deepEqual(reports, [], 'nothing to report');
  fs.bfree += 1; // root's free space grew (a file deleted), even if an unprivileged user sees none yet
  await watch.tick();
  assert.equal(disk.retries, 1);
  await watch.tick();
  assert.equal(watch.watching, false, 'nothing parked: the watch stops');
});

test('a retry that still finds no space parks again; the next one waits for space to grow again', async () => {
  const { fs, disk, reports, watch } = setup();
  disk.fits = false;
  watch.start();
  fs.bfree += 4;
  fs.bavail = 4;
  await watch.tick();
  assert.equal(disk.retries, 1);
  assert.deepEqual(
    reports.at(-1),
    { parked: 2, parkedBytes: 64 * KiB, freeBytes: 16 * KiB, missingBytes: 48 * KiB },
    'the new numbers are reported',
  );
  const n = reports.length;
  await watch.tick();
  assert.equal(disk.retries, 1, 'no change: no retry');
  assert.equal(reports.length, n, 'and no report');
  fs.bavail = 32; // 128 KiB looks enough, but root's free space did not grow: not before retryMs (an hour here)
  await watch.tick();
  assert.equal(disk.retries, 1);
  assert.equal(reports.at(-1)!.missingBytes, 0);
  fs.bfree += 1;
  await watch.tick();
  assert.equal(disk.retries, 2, 'grew: retried');
  watch.stop();
});

test('free space that looks enough but does not change: retried every retryMs', async () => {
  const { fs, disk, watch } = setup('file', 50);
  disk.fits = false;
  watch.start();
  fs.bavail = 32;
  await new Promise((r) => setTimeout(r, 60));
  await watch.tick();
  assert.equal(disk.retries, 1);
  watch.stop();
});

test('a block device: free space unknown (null), retried every retryMs', async () => {
  const slow = setup('block');
  slow.disk.fits = false;
  assert.deepEqual(slow.watch.start(), { parked: 2, parkedBytes: 64 * KiB, freeBytes: null, missingBytes: null });
  await slow.watch.tick();
  assert.equal(slow.disk.retries, 0, 'not before retryMs (an hour here)');
  slow.watch.stop();
  const { disk, watch } = setup('block', 50);
  disk.fits = false;
  watch.start();
  await new Promise((r) => setTimeout(r, 60));
  await watch.tick();
  assert.equal(disk.retries, 1);
  watch.stop();
});

test('statfs failing (the file gone) is not fatal: free space unknown, retried on the timer', async () => {
  const { disk, watch } = setup();
  const failing = new SpaceWatch('/srv/gone.img', 'file', disk, () => {}, {
    intervalMs: HOUR,
    retryMs: 50,
    statfs: () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    },
  });
  assert.deepEqual(failing.start(), { parked: 2, parkedBytes: 64 * KiB, freeBytes: null, missingBytes: null });
  await new Promise((r) => setTimeout(r, 60));
  await failing.tick();
  assert.equal(disk.retries, 1);
  failing.stop();
  watch.stop();
});
