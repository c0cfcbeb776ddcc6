// The advisor on real files (ext4 under /tmp, tmpfs in /dev/shm) and real loop devices.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { closeSync, constants, existsSync, openSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from '../../electron/host/advisor/advisor.js';
import { createImage } from '../../electron/host/images/create-image.js';
import { SpindleError } from '../../electron/shared/errors.js';
import { attachLoop, makeFile, mountFs, tempDir } from '../lib/loop.js';

const MiB = 1 << 20;
const isErr = (code: string, re: RegExp) => (e: unknown) => e instanceof SpindleError && e.code === code && re.test(e.message);

test('a sparse file is sparse, not safe for native, and gets threads + writeback', async () => {
  const dir = tempDir();
  try {
    const i = await inspect(makeFile(join(dir.path, 'sparse.img'), 16 * MiB));
    assert.equal(i.kind, 'file');
    assert.equal(i.sizeBytes, 16 * MiB);
    assert.equal(i.sparse, true);
    assert.equal(i.allocation!.holeBytes, 16 * MiB);
    assert.equal(i.directIo, true);
    assert.ok(i.logicalBlockSize && [512, 1024, 2048, 4096].includes(i.logicalBlockSize));
    assert.ok(i.filesystem && !i.filesystem.startsWith('unknown'), String(i.filesystem));
    assert.equal(i.safeForNative, false);
    assert.deepEqual(i.recommended, { aio: 'threads', cache: 'writeback', nowait: false });
    assert.ok(i.reasons.some((r) => /sparse/.test(r) && /preallocat/.test(r)), i.reasons.join('\n'));
    // Allocation-aware native is advised where it was measured (ext4, xfs), and only there.
    const allocationAware = i.reasons.some((r) => /nowait 'auto' \(allocation-aware\)/.test(r));
    assert.equal(allocationAware, i.filesystem === 'ext4' || i.filesystem === 'xfs', `${i.filesystem}: ${i.reasons.join('\n')}`);
  } finally {
    dir.cleanup();
  }
});

test('a written file and a fallocated file are not sparse and are safe for native', async () => {
  const dir = tempDir();
  try {
    const written = await inspect(makeFile(join(dir.path, 'written.img'), 8 * MiB, { written: true }));
    assert.equal(written.sparse, false);
    assert.equal(written.allocation!.unwrittenBytes, 0);
    assert.equal(written.safeForNative, true);
    assert.ok(written.reasons.some((r) => /^Safe for native/.test(r)));

    const made = createImage(join(dir.path, 'falloc.img'), 8 * MiB, { preallocate: true });
    assert.equal(made.method, 'fallocate');
    const falloc = await inspect(made.path);
    assert.equal(falloc.sparse, false, 'fallocated ranges are not holes, even though ext4 SEEK_HOLE says so');
    assert.equal(falloc.safeForNative, true);
    if (falloc.allocation!.fiemap) {
      assert.equal(falloc.allocation!.unwrittenBytes, 8 * MiB);
      assert.ok(falloc.reasons.some((r) => /unwritten extents/.test(r)));
    }
    assert.deepEqual(falloc.recommended, { aio: 'threads', cache: 'writeback', nowait: false });
  } finally {
    dir.cleanup();
  }
});

test('createImage: sparse by default, refuses existing paths, unaligned sizes and ENOSPC leaves nothing', async () => {
  const dir = tempDir();
  const fs = mountFs('ext4', 16);
  try {
    const sparse = createImage(join(dir.path, 'a.img'), 4 * MiB);
    assert.equal(sparse.method, 'sparse');
    assert.equal(statSync(sparse.path).blocks, 0);
    assert.throws(() => createImage(sparse.path, 4 * MiB), isErr('CONFLICT', /already exists/));
    assert.throws(() => createImage(join(dir.path, 'b.img'), 1000), isErr('SIZE_NOT_ALIGNED', /multiple of 512.*512 or 1024/));
    assert.throws(() => createImage(join(dir.path, 'c.img'), 0), isErr('SIZE_NOT_ALIGNED', /positive/));
    assert.throws(() => createImage(join(dir.path, 'nodir', 'd.img'), 4 * MiB), isErr('NOT_FOUND', /does not exist/));
    const big = join(fs.mountpoint, 'big.img');
    assert.throws(() => createImage(big, 64 * MiB, { preallocate: true }), isErr('NO_SPACE', /partial file was removed/));
    assert.equal(existsSync(big), false);
  } finally {
    fs.cleanup();
    dir.cleanup();
  }
});

test('a loop device is a block device with native + none, nowait off', async () => {
  const dir = tempDir();
  const loop = attachLoop(makeFile(join(dir.path, 'disk.img'), 32 * MiB));
  try {
    const i = await inspect(loop.device);
    assert.equal(i.kind, 'block');
    assert.equal(i.sizeBytes, 32 * MiB);
    assert.equal(i.logicalBlockSize, 512);
    assert.equal(i.sparse, false);
    assert.equal(i.inUse, false);
    assert.equal(i.usage!.exclusiveOpen, 'free');
    assert.deepEqual(i.recommended, { aio: 'native', cache: 'none', nowait: false });
    assert.ok(i.reasons.some((r) => /nowait stays off/.test(r)));
    // The image behind it is now in use by the host.
    const backing = await inspect(loop.backingFile);
    assert.equal(backing.inUse, true);
    assert.ok(backing.reasons[0]!.includes(loop.device));
  } finally {
    loop.detach();
    dir.cleanup();
  }
});

test('a mounted loop device is in use, with the mount point in the reason', async () => {
  const fs = mountFs('ext4', 16);
  try {
    const i = await inspect(fs.device.device);
    assert.equal(i.inUse, true);
    assert.deepEqual(i.usage!.mountpoints, [fs.mountpoint]);
    assert.ok(i.reasons.some((r) => r.includes(`mounted at ${fs.mountpoint}`)), i.reasons.join('\n'));
    assert.equal(i.safeForNative, false);
  } finally {
    fs.cleanup();
  }
});

test('a file on tmpfs reports tmpfs, the real O_DIRECT result and a reason', async () => {
  const dir = tempDir('spindle-test-', '/dev/shm');
  try {
    const path = makeFile(join(dir.path, 'ram.img'), 4 * MiB, { written: true });
    let direct = true;
    try { closeSync(openSync(path, constants.O_RDONLY | constants.O_DIRECT)); } catch { direct = false; }
    const i = await inspect(path);
    assert.equal(i.filesystem, 'tmpfs');
    assert.equal(i.directIo, direct, 'kernels before 6.6 refuse O_DIRECT on tmpfs; later ones accept it');
    assert.ok(i.reasons.some((r) => /^tmpfs keeps the file in RAM/.test(r)));
    if (!direct) assert.equal(i.safeForNative, false);
    assert.deepEqual(i.recommended, { aio: 'threads', cache: 'writeback', nowait: false });
  } finally {
    dir.cleanup();
  }
});

test('bad paths give sentences: missing, directory, not a disk, empty', async () => {
  const dir = tempDir();
  try {
    await assert.rejects(inspect(join(dir.path, 'nope.img')), isErr('NOT_FOUND', /nope\.img does not exist\./));
    await assert.rejects(inspect(join(dir.path, 'nope', 'x.img')), isErr('NOT_FOUND', /does not exist/));
    await assert.rejects(inspect(dir.path), isErr('IS_DIRECTORY', /is a directory/));
    await assert.rejects(inspect('/dev/null'), isErr('NOT_A_DISK', /character device, not an image file or a block device/));
    await assert.rejects(inspect(''), isErr('INVALID_ARGUMENT', /No path given/));
  } finally {
    dir.cleanup();
  }
});

test('permission denied names the group that grants access (run as nobody)', async () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'private.img');
    writeFileSync(path, Buffer.alloc(4096));
    // /etc/group has 'disk' (gid 6) on Debian: give the file that group and no access for others.
    const { chmodSync, chownSync } = await import('node:fs');
    chownSync(path, 0, 6);
    chmodSync(path, 0o640);
    chmodSync(dir.path, 0o755);
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(process.execPath, ['bin/spindle.js', 'inspect', path], { uid: 65534, gid: 65534, encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /Permission denied opening .*private\.img\. Members of group 'disk' may open it/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  } finally {
    dir.cleanup();
  }
});
