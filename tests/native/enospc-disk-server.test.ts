// ENOSPC policy through the IOThread: a DiskServer (worker_thread, vhost-user socket)
// over a sparse image on a tiny loop-mounted ext4 that is nearly full, driven by `spindle loadgen`
// (a real vhost-user frontend with its own guest memory and rings) writing a seeded pattern and
// reading it back. With 'stop' the writes that meet ENOSPC are parked: the server says so with what
// is missing ('no-space'), the guest sees no error and nothing counts them as failed; a retry asked
// for while the filesystem is still full parks them again ('no-space', retried); once a file is
// deleted the IOThread notices by itself, retries them ('space-recovered'), and loadgen finishes with
// 0 errors and every block matching. With 'report' the same full filesystem gives I/O errors.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { statfsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { DiskServer, type DiskEvent, type DiskSpec } from '../../electron/host/disks/disk-server.js';
import { runLoadgen, type LoadgenOptions } from '../../electron/tools/loadgen.js';
import { DiskFaultWatch } from '../../electron/host/disks/fault-watch.js';
import { makeFile, mountFs } from '../lib/loop.js';

const MiB = 1 << 20;
const REGION = 6 * MiB;  // more than the ~1 MiB left free

function fillUp(mountpoint: string): string {
  const ballast = join(mountpoint, 'ballast');
  const st = statfsSync(mountpoint);
  execFileSync('fallocate', ['-l', String(st.bfree * st.bsize - MiB), ballast]);
  return ballast;
}

const spec = (image: string, socketPath: string, enospc: 'stop' | 'report'): DiskSpec => ({
  path: image, socketPath, aio: 'threads', cache: 'writeback', nowait: 'off', readOnly: false, queues: 1, serial: 'full', enospc,
});

const verifyRun = (socket: string): LoadgenOptions => ({
  socket, rw: 'write', bs: 256 << 10, iodepth: 4, queues: 1, runtimeSec: 120, size: REGION,
  verify: true, verifyOnly: false, rwmixread: 0, seed: 7, passes: 1,
});

async function until(what: string, done: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("enospc 'stop' through the disk server: parked with what is missing, not failed, retried by itself once space is freed, every block reads back", async (t) => {
  const fs = mountFs('ext4', 16, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  const image = makeFile(join(fs.mountpoint, 'disk.img'), 32 * MiB);  // sparse, larger than the filesystem
  const ballast = fillUp(fs.mountpoint);
  const ds = await DiskServer.start(spec(image, join(fs.mountpoint, 'd.sock'), 'stop'));
  try {
    const events: DiskEvent[] = [];
    ds.on('event', (e) => events.push(e));
    const run = runLoadgen(verifyRun(ds.spec.socketPath));
    let settled = false;
    void run.finally(() => (settled = true)).catch(() => undefined);

    await until('the no-space event', () => events.some((e) => e.kind === 'no-space') || settled);
    const first = events.find((e) => e.kind === 'no-space');
    assert.ok(first && first.kind === 'no-space', `no-space: ${JSON.stringify(events)}`);
    assert.equal(first.retried, false);
    assert.equal(first.sentence, `The filesystem holding ${image} is full: ${first.parked} write${first.parked === 1 ? '' : 's'} wait${first.parked === 1 ? 's' : ''} until space is freed.`);
    assert.ok(first.parked >= 1 && first.parkedBytes >= 256 << 10, JSON.stringify(first));
    assert.ok(first.freeBytes !== null && first.missingBytes !== null && first.missingBytes > 0, `what is missing: ${JSON.stringify(first)}`);
    assert.equal(settled, false, 'the guest is still waiting for its writes (no error came back)');
    assert.ok(ds.stats().write.errors >= 1, 'the engine did meet ENOSPC');
    assert.deepEqual(ds.failedRequests(), { read: 0, write: 0, flush: 0, discard: 0, writeZeroes: 0 }, 'but nothing was failed to the guest');
    const watch = new DiskFaultWatch(ds, 60_000);
    assert.deepEqual(watch.check(), [], 'so no "I/O requests failed" sentence');

    // Asked to retry while the filesystem is still full: parked again, said again, no error.
    const again = await ds.retryParked();
    assert.ok(again.retried >= 1 && again.parked >= 1, JSON.stringify(again));
    await until('the retried no-space event', () => events.some((e) => e.kind === 'no-space' && e.retried));
    assert.equal(settled, false);
    assert.equal(events.some((e) => e.kind === 'space-recovered'), false);

    unlinkSync(ballast);
    execFileSync('sync', ['-f', fs.mountpoint]);
    // Nobody asks: the IOThread sees the free space grow and retries by itself.
    await until('the space-recovered event', () => events.some((e) => e.kind === 'space-recovered'));
    const r = await run;
    assert.equal(r.errors, 0, 'the guest saw no I/O error');
    assert.ok(r.verify, 'verify ran');
    assert.equal(r.verify.blocks, REGION / (256 << 10), 'every block was read back');
    assert.equal(r.verify.mismatches, 0, 'and matched what was written');
    const recovered = events.find((e) => e.kind === 'space-recovered');
    assert.ok(recovered && recovered.kind === 'space-recovered' && recovered.completed >= 1, JSON.stringify(recovered));
    assert.equal(ds.failedRequests().write, 0);
    assert.deepEqual(watch.check(), []);
  } finally {
    await ds.stop();
  }
});

test("enospc 'report' through the disk server: the guest gets I/O errors, no no-space event", async (t) => {
  const fs = mountFs('ext4', 16, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  const image = makeFile(join(fs.mountpoint, 'disk.img'), 32 * MiB);
  fillUp(fs.mountpoint);
  const ds = await DiskServer.start(spec(image, join(fs.mountpoint, 'd.sock'), 'report'));
  try {
    const events: DiskEvent[] = [];
    ds.on('event', (e) => events.push(e));
    const r = await runLoadgen({ ...verifyRun(ds.spec.socketPath), verify: false });
    assert.ok(r.errors > 0, `the guest saw I/O errors (${r.errors})`);
    assert.equal(ds.failedRequests().write, r.errors, 'each counted as failed to the guest');
    assert.equal(events.filter((e) => e.kind === 'no-space').length, 0);
  } finally {
    await ds.stop();
  }
});

test('a bad enospc policy in the spec is refused with a sentence and the server does not start', async () => {
  const fs = mountFs('ext4', 16, { base: '/var/tmp' });
  try {
    const image = makeFile(join(fs.mountpoint, 'disk.img'), 4 * MiB);
    await assert.rejects(
      DiskServer.start({ ...spec(image, join(fs.mountpoint, 'd.sock'), 'stop'), enospc: 'ignore' as 'stop' }),
      /ENOSPC policy must be 'stop' or 'report'/,
    );
  } finally {
    fs.cleanup();
  }
});
