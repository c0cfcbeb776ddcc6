// ENOSPC policy through the IOThread (issue 6 §4): a DiskServer (worker_thread, vhost-user socket)
// over a sparse image on a tiny loop-mounted ext4 that is nearly full, driven by `spindle loadgen`
// (a real vhost-user frontend with its own guest memory and rings) writing a seeded pattern and
// reading it back. With 'stop' the writes that meet ENOSPC are parked: the server says so once
// ('no-space' event with the sentence), the guest sees no error; space is freed, resumeParked()
// resubmits them, and loadgen finishes with 0 errors and every block matching. With 'report' the
// same full filesystem gives the guest I/O errors and no event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { statfsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { DiskServer, type DiskEvent, type DiskSpec } from '../../electron/iothread/disk-server.js';
import { runLoadgen, type LoadgenOptions } from '../../electron/cli/loadgen.js';
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

test("enospc 'stop' through the disk server: no-space event, no I/O error, free space + resume-parked, every block reads back", async (t) => {
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
    const noSpace = events.filter((e) => e.kind === 'no-space');
    assert.equal(noSpace.length, 1, `one event: ${JSON.stringify(events)}`);
    assert.equal((noSpace[0] as { sentence: string }).sentence, `The filesystem holding ${image} is full: the VM is paused until space is freed.`);
    assert.equal(settled, false, 'the guest is still waiting for its writes (no error came back)');

    unlinkSync(ballast);
    execFileSync('sync', ['-f', fs.mountpoint]);
    await ds.resumeParked();
    const r = await run;
    assert.equal(r.errors, 0, 'the guest saw no I/O error');
    assert.ok(r.verify, 'verify ran');
    assert.equal(r.verify.blocks, REGION / (256 << 10), 'every block was read back');
    assert.equal(r.verify.mismatches, 0, 'and matched what was written');
    assert.equal(events.filter((e) => e.kind === 'no-space').length, 1, 'no second event once space was there');
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
