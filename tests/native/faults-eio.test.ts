// Host faults under served disks (the EIO part). Real faults, no doubles:
// - EIO: an ext4 filesystem shut down (EXT4_IOC_SHUTDOWN via xfs_io, as after a fatal device
//   error) under an image file, and under a loop device's backing file (so a host block device
//   served with native AIO fails too). device-mapper's `error` target is not available here (no
//   dm driver in this kernel/container), and truncating a loop device's backing file does not
//   give EIO on Linux (the loop driver zero-fills reads past the end), hence the shutdown.
// - the image file deleted, moved or replaced; a loop device detached (losetup -d).
// Each time: the faulty disk reports it (IOERR to the guest, a DiskFaultWatch sentence), and
// another disk served at the same time goes on working with verified data.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { DiskServer, type DiskSpec } from '../../electron/host/disks/disk-server.js';
import { DiskFaultWatch, type DiskFault } from '../../electron/host/disks/fault-watch.js';
import { runLoadgen, type LoadgenOptions } from '../../electron/tools/loadgen.js';
import { attachLoop, makeFile, mountFs, tempDir, type LoopDevice, type MountedFs } from '../lib/loop.js';
import { waitFor } from '../lib/wait.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const load = (socket: string, o: Partial<LoadgenOptions> = {}): LoadgenOptions => ({
  socket, rw: 'randrw', bs: 4096, iodepth: 8, queues: 1, runtimeSec: 1.2, size: 0,
  verify: false, verifyOnly: false, rwmixread: 50, seed: 21, ...o,
});
const spec = (path: string, socketPath: string, o: Partial<DiskSpec> = {}): DiskSpec => ({
  path, socketPath, aio: 'threads', cache: 'writeback', nowait: 'off', readOnly: false, queues: 1, serial: basename(path).slice(0, 20), ...o,
});

/** The healthy neighbour: served throughout, must see no error and read back what it wrote. */
async function neighbourCheck(ds: DiskServer, seed: number): Promise<void> {
  const v = await runLoadgen(load(ds.spec.socketPath, { verify: true, size: 2 << 20, seed }));
  assert.equal(v.errors, 0);
  assert.equal(v.verify?.mismatches, 0);
}

test('EIO from a failing filesystem: the image-file disk and the loop-device disk (native AIO) fail requests and say so; the neighbour goes on', async () => {
  const dir = tempDir('spindle-faults-');
  let fs: MountedFs | null = null;
  let loop: LoopDevice | null = null;
  const servers: DiskServer[] = [];
  try {
    fs = mountFs('ext4', 64);
    const image = makeFile(join(fs.mountpoint, 'disk.img'), 8 << 20, { written: true });
    loop = attachLoop(makeFile(join(fs.mountpoint, 'loop-backing.img'), 8 << 20, { written: true }));
    const bad = await DiskServer.start(spec(image, join(dir.path, 'bad.sock')));
    servers.push(bad);
    const badDev = await DiskServer.start(spec(loop.device, join(dir.path, 'bad-dev.sock'), { aio: 'native', cache: 'none' }));
    servers.push(badDev);
    const good = await DiskServer.start(spec(makeFile(join(dir.path, 'good.img'), 8 << 20, { written: true }), join(dir.path, 'good.sock')));
    servers.push(good);
    const watches = [new DiskFaultWatch(bad, 60_000), new DiskFaultWatch(badDev, 60_000), new DiskFaultWatch(good, 60_000)];

    const runs = [bad, badDev, good].map((ds) => runLoadgen(load(ds.spec.socketPath, { runtimeSec: 1.5 })));
    await sleep(400);
    execFileSync('xfs_io', ['-x', '-c', 'shutdown', fs.mountpoint]); // the filesystem now fails every I/O with EIO
    const [rBad, rBadDev, rGood] = await Promise.all(runs);

    assert.ok(rBad!.errors > 0, 'the image-file disk returned IOERR to the guest');
    assert.ok(rBadDev!.errors > 0, 'the loop-device disk returned IOERR to the guest');
    assert.equal(rGood!.errors, 0, 'the neighbour saw no error');
    assert.ok(rGood!.ios > 0);
    const faults = watches.map((w) => w.check());
    for (const [i, f] of faults.slice(0, 2).entries()) {
      assert.equal(f.length, 1, `disk ${i}: ${JSON.stringify(f)}`);
      assert.equal(f[0]!.kind, 'io-errors');
      assert.match(f[0]!.reason, /^\d+ I\/O requests? on \/.+ failed in the last \d+ s \(.+\): the host's disk or filesystem reports errors, and the guest sees I\/O errors on this disk\. Other disks are not affected\.$/);
    }
    assert.deepEqual(faults[2], [], 'nothing to report for the neighbour');
    assert.deepEqual(watches[0]!.check(), [], 'reported once per burst');

    // The failing disks stay up (no crash, still answering), their counters name the errors.
    for (const ds of [bad, badDev]) {
      assert.equal(ds.failed, null);
      assert.ok(ds.stats().read.errors + ds.stats().write.errors > 0);
      const again = await runLoadgen(load(ds.spec.socketPath, { runtimeSec: 0.2 }));
      assert.ok(again.errors > 0 && again.errors === again.ios, 'every request fails, none hangs');
    }
    await neighbourCheck(good, 22);
  } finally {
    for (const s of servers) await s.stop();
    loop?.detach();
    fs?.cleanup();
    dir.cleanup();
  }
});

test('image file deleted, moved or replaced under a running disk: it keeps serving the open file and says what happened', async () => {
  const dir = tempDir('spindle-faults-');
  const servers: DiskServer[] = [];
  try {
    const paths = ['deleted', 'moved', 'replaced'].map((n) => makeFile(join(dir.path, `${n}.img`), 8 << 20, { written: true }));
    for (const p of paths) servers.push(await DiskServer.start(spec(p, `${p}.sock`)));
    const good = await DiskServer.start(spec(makeFile(join(dir.path, 'good.img'), 8 << 20, { written: true }), join(dir.path, 'good.sock')));
    servers.push(good);
    const watches = servers.map((s) => new DiskFaultWatch(s, 60_000));
    const seen: DiskFault[][] = watches.map(() => []);
    watches.forEach((w, i) => w.on('fault', (f) => seen[i]!.push(f)));
    // Data written before the file goes away is still read back after (the open file lives on).
    for (const s of servers) assert.equal((await runLoadgen(load(s.spec.socketPath, { verify: true, size: 1 << 20, seed: 5 }))).errors, 0);

    // Reads while the files go away (random writes would overwrite the verified pattern).
    const runs = servers.map((s) => runLoadgen(load(s.spec.socketPath, { rw: 'randread' })));
    await sleep(300);
    unlinkSync(paths[0]!);
    renameSync(paths[1]!, join(dir.path, 'elsewhere.img'));
    renameSync(paths[2]!, join(dir.path, 'old.img'));
    writeFileSync(paths[2]!, 'a different file');
    for (const r of await Promise.all(runs)) assert.equal(r.errors, 0, 'every disk went on serving');
    watches.forEach((w) => w.check());

    assert.equal(seen[0]![0]?.kind, 'file-gone');
    assert.match(seen[0]![0]!.reason, /^The image file .*deleted\.img was deleted or moved while the disk is in use: the disk keeps working on the open file, but it is lost when the disk stops unless the file is put back\.$/);
    assert.equal(seen[1]![0]?.kind, 'file-gone');
    assert.equal(seen[2]![0]?.kind, 'file-replaced');
    assert.match(seen[2]![0]!.reason, /replaced by another file while the disk is in use/);
    assert.deepEqual(seen[3], []);
    for (const s of servers.slice(0, 3)) {
      const v = await runLoadgen(load(s.spec.socketPath, { verifyOnly: true, size: 1 << 20, seed: 5 }));
      assert.equal(v.verify?.mismatches, 0, 'data written before the fault reads back intact');
      const w = await runLoadgen(load(s.spec.socketPath, { verify: true, size: 2 << 20, seed: 6 }));
      assert.equal(w.errors + (w.verify?.mismatches ?? 1), 0, 'and new writes land and read back');
    }
    assert.deepEqual(watches.map((w) => w.check().length), [0, 0, 0, 0], 'each change is reported once');
    await neighbourCheck(good, 23);
  } finally {
    for (const s of servers) await s.stop();
    dir.cleanup();
  }
});

test('a loop device detached (losetup -d) under a running disk: the kernel defers it, the disk goes on and says so; the device goes when the disk stops', async () => {
  const dir = tempDir('spindle-faults-');
  let loop: LoopDevice | null = null;
  let ds: DiskServer | null = null;
  let good: DiskServer | null = null;
  try {
    loop = attachLoop(makeFile(join(dir.path, 'backing.img'), 8 << 20, { written: true }));
    const name = basename(loop.device);
    ds = await DiskServer.start(spec(loop.device, join(dir.path, 'dev.sock'), { aio: 'native', cache: 'none' }));
    good = await DiskServer.start(spec(makeFile(join(dir.path, 'good.img'), 8 << 20, { written: true }), join(dir.path, 'good.sock')));
    const watch = new DiskFaultWatch(ds, 60_000);
    assert.deepEqual(watch.check(), []);
    const runs = [runLoadgen(load(ds.spec.socketPath)), runLoadgen(load(good.spec.socketPath))];
    await sleep(300);
    execFileSync('losetup', ['-d', loop.device]);
    const [r, g] = await Promise.all(runs);
    assert.equal(r!.errors, 0, 'the detached device keeps working while the disk holds it');
    assert.equal(g!.errors, 0);
    const f = watch.check();
    assert.equal(f[0]?.kind, 'loop-detached', JSON.stringify(f));
    assert.match(f[0]!.reason, new RegExp(`^The loop device /dev/${name} \\(over .*backing\\.img\\) was detached on the host; it keeps working until this disk stops, then it disappears\\.$`));
    await ds.stop();
    ds = null;
    await waitFor(() => !existsSync(`/sys/class/block/${name}/loop/backing_file`), {
      timeoutMs: 30_000,
      what: 'the kernel to release the loop device once the disk closed it',
    });
    await neighbourCheck(good, 24);
  } finally {
    await ds?.stop();
    await good?.stop();
    loop?.detach();
    rmSync(dir.path, { recursive: true, force: true });
  }
});
