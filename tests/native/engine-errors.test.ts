// Refusals and I/O errors surface as typed SpindleErrors (or -errno results) with sentences.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, openSync, closeSync, constants, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { openDisk } from '../../electron/dataplane/block/open.js';
import { AioEngine } from '../../electron/dataplane/block/engine.js';
import { SpindleError } from '../../electron/shared/errors.js';
import { makeFile, mountFs, tempDir } from '../lib/loop.js';
import { Completions, OPS } from './engine-helpers.js';

const isCode = (code: string, re?: RegExp) => (e: unknown) => {
  assert.ok(e instanceof SpindleError, `expected a SpindleError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

test('a missing path, a directory and a character device are refused with sentences', async (t) => {
  const dir = tempDir('spindle-err-', '/var/tmp');
  t.after(() => dir.cleanup());
  await assert.rejects(BlockBackend.open(`${dir.path}/nope.img`), isCode('NOT_FOUND', /does not exist/));
  assert.throws(() => openDisk(dir.path, { cache: 'writeback' }), isCode('IS_DIRECTORY', /is a directory/));
  assert.throws(() => openDisk('/dev/null', { cache: 'writeback' }), isCode('NOT_A_DISK', /neither a regular file nor a block device/));
});

test('a size that is not a multiple of 512 is refused', () => {
  const dir = tempDir('spindle-err-', '/var/tmp');
  try {
    writeFileSync(`${dir.path}/odd.img`, Buffer.alloc(1000));
    assert.throws(() => openDisk(`${dir.path}/odd.img`, { cache: 'writeback' }), isCode('SIZE_NOT_ALIGNED', /multiple of 512/));
  } finally {
    dir.cleanup();
  }
});

test("aio 'native' with a buffered cache mode is refused, before and inside the engine", async () => {
  const dir = tempDir('spindle-err-', '/var/tmp');
  try {
    const path = makeFile(`${dir.path}/a.img`, 1 << 20);
    await assert.rejects(BlockBackend.open(path, { aio: 'native', cache: 'writeback' }), isCode('UNSUPPORTED_MODE', /needs cache 'none' or 'directsync'/));
    // The engine itself checks the fd's flags (fcntl F_GETFL), whoever calls it.
    const fd = openSync(path, constants.O_RDWR);
    try {
      assert.throws(
        () => new AioEngine({ kind: 'native', fd, isBlock: false, alignment: 512, onComplete: () => {} }),
        (e: NodeJS.ErrnoException) => e.code === 'EINVAL' && /O_DIRECT/.test(e.message),
      );
    } finally {
      closeSync(fd);
    }
  } finally {
    dir.cleanup();
  }
});

test('O_DIRECT on a filesystem without it (ramfs) is refused with advice', () => {
  // tmpfs gained O_DIRECT in Linux 6.6; ramfs still refuses it with EINVAL.
  const dir = tempDir('spindle-err-', '/var/tmp');
  execFileSync('mount', ['-t', 'ramfs', 'ramfs', dir.path]);
  try {
    const path = makeFile(`${dir.path}/a.img`, 1 << 20);
    assert.throws(() => openDisk(path, { cache: 'none' }), isCode('UNSUPPORTED_MODE', /does not support direct I\/O.*writeback/));
  } finally {
    execFileSync('umount', [dir.path]);
    dir.cleanup();
  }
});

test('a mounted device is refused (O_EXCL)', (t) => {
  const fs = mountFs('ext4', 16, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  assert.throws(() => openDisk(fs.device.device, { cache: 'none' }), isCode('DEVICE_MOUNTED', new RegExp(`mounted at ${fs.mountpoint}`)));
});

test('no permission names the group that grants access', (t) => {
  const dir = tempDir('spindle-err-', '/var/tmp');
  t.after(() => dir.cleanup());
  chmodSync(dir.path, 0o755);
  const path = makeFile(`${dir.path}/disk-group.img`, 1 << 20);
  chownSync(path, 0, 6);  // group 'disk' on Debian
  chmodSync(path, 0o660);
  const openJs = fileURLToPath(new URL('../../electron/dataplane/block/open.js', import.meta.url));
  const script = `import(${JSON.stringify(openJs)}).then((m) => { try { m.openDisk(${JSON.stringify(path)}, { cache: 'writeback' }); console.log('opened'); } catch (e) { console.log(JSON.stringify(e.toJSON ? e.toJSON() : String(e))); } })`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' });
  const out = JSON.parse(r.stdout.trim()) as { code: string; message: string };
  assert.equal(out.code, 'PERMISSION_DENIED', r.stderr);
  assert.match(out.message, /group 'disk'/);
});

test('ENOSPC on a tiny filesystem surfaces as -ENOSPC and NO_SPACE', async (t) => {
  const fs = mountFs('ext4', 8, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  mkdirSync(`${fs.mountpoint}/d`);
  const path = makeFile(`${fs.mountpoint}/d/big.img`, 64 << 20);  // sparse: larger than the filesystem
  for (const aio of ['threads', 'native', 'io_uring'] as const) {
    const b = await BlockBackend.open(path, { aio, cache: 'none', nowait: 'off' });
    try {
      const chunk = Buffer.alloc(1 << 20, 0x5a);
      let error: unknown = null;
      for (let off = 0; off < 64 << 20 && !error; off += chunk.length) {
        await b.write(off, chunk).catch((e) => { error = e; });
      }
      assert.ok(error, `${aio}: filling a 64 MiB file on 8 MiB fails`);
      isCode('NO_SPACE', /no space left/)(error);
      assert.equal((error as SpindleError).errno, 'ENOSPC');
      assert.ok(b.counters.snapshot().write.errors >= 1);
    } finally {
      await b.close();
    }
    await BlockBackend.open(path, { cache: 'writeback' }).then((b) => b.discard(0, 64 << 20).then(() => b.close()));
  }
});

test('bad requests complete with -errno and never touch anything else', async (t) => {
  const dir = tempDir('spindle-err-', '/var/tmp');
  t.after(() => dir.cleanup());
  const path = makeFile(`${dir.path}/a.img`, 1 << 20);
  const b = await BlockBackend.open(path, { aio: 'native', cache: 'none' });
  t.after(() => b.close());
  const done = new Completions(b);
  b.registerBuffer(1, new Uint8Array(8192));
  const expect = (tag: number) => done.expect(tag);
  b.begin(1, OPS.Write, 100);  // O_DIRECT, unaligned offset: done by read-modify-write
  b.segment(1, 0, 512);
  b.begin(2, OPS.Read, 0);
  b.segment(7, 0, 512);  // unknown buffer
  b.begin(3, OPS.Read, 0);
  b.segment(1, 8000, 512);  // past the buffer's end
  b.begin(4, 9 as never, 0);  // unknown op
  b.begin(5, OPS.Read, 0);
  b.segment(1, 0, 1000);  // O_DIRECT, unaligned length: read through the covering blocks
  const r = [expect(1), expect(2), expect(3), expect(4), expect(5)];
  b.submit();
  assert.deepEqual(await Promise.all(r), [0, -14, -14, -22, 0]);
  assert.equal(b.counters.snapshot().read.errors + b.counters.snapshot().write.errors >= 3, true);
});

test('writes to a read-only backend complete with -EROFS and READ_ONLY', async (t) => {
  const dir = tempDir('spindle-err-', '/var/tmp');
  t.after(() => dir.cleanup());
  const path = makeFile(`${dir.path}/ro.img`, 1 << 20, { written: true });
  for (const aio of ['threads', 'native', 'io_uring'] as const) {
    const b = await BlockBackend.open(path, { aio, cache: 'none', readOnly: true });
    try {
      assert.equal(b.readOnly, true);
      await assert.rejects(b.write(0, Buffer.alloc(4096)), isCode('READ_ONLY'));
      await assert.rejects(b.discard(0, 4096), isCode('READ_ONLY'));
      assert.equal((await b.read(0, 4096))[0], 0xa5, 'reads still work');
    } finally {
      await b.close();
    }
  }
});
