// A running VM's disks released and reopened under the guest (DiskServer.detach/reattach through
// VmManager.withDisksReleased), the step a live internal snapshot takes around qemu-img: while
// released, Spindle holds no fd and no lock on the image, so qemu-io can write it (refused before);
// after, the disk server is back on the same socket, QEMU has reconnected, and the guest reads
// qemu-io's bytes and keeps writing, with no I/O error. A guest the user paused is refused with a sentence.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmManager } from '../../electron/host/vm/manager.js';
import { VmStore } from '../../electron/host/vm/store.js';
import { methods } from '../../electron/shared/api.js';
import { guestBoot, GuestAgent } from './vm-guest.js';

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'spindle-release-'));
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_RUNTIME_DIR: join(dir, 'run') };
const manager = new VmManager({ store: new VmStore(join(dir, 'cfg', 'spindle', 'vms')), env });
after(async () => {
  await manager.stopAll(1000);
  rmSync(dir, { recursive: true, force: true });
});

function hostMd5(path: string, offset: number, length: number): string {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    assert.equal(readSync(fd, buf, 0, length, offset), length);
    return createHash('md5').update(buf).digest('hex');
  } finally {
    closeSync(fd);
  }
}

const qemuIoWrite = (path: string, pattern: number, offset: string) =>
  spawnSync('qemu-io', ['-f', 'raw', '-c', `write -P ${pattern} ${offset} 1M`, path], { encoding: 'utf8' });

test('release: qemu-io writes the image while Spindle has let go; the guest reads it after and keeps writing', async () => {
  const image = join(dir, 'd0.img');
  writeFileSync(image, '');
  truncateSync(image, 64 * MiB);
  const vm = await manager.create(
    methods['vm.create'].params.parse({
      name: 'rel',
      memoryMiB: 192,
      display: 'none',
      network: { user: false },
      boot: await guestBoot(),
      disks: [{ path: image }],
    }),
  );
  const id = vm.config.id;
  const agent = new GuestAgent(manager, id);
  await manager.start(id);
  await agent.ready();
  const dd = (cmd: string) => agent.runOk(cmd).then((o) => o.trim().split('\n').at(-1)!.split(' ')[0]!);
  const before = await dd(
    'dd if=/dev/urandom of=/dev/vda bs=1M seek=8 count=1 oflag=direct conv=fsync 2>/dev/null; dd if=/dev/vda bs=1M skip=8 count=1 iflag=direct 2>/dev/null | md5sum',
  );
  assert.equal(hostMd5(image, 8 * MiB, MiB), before);

  const held = qemuIoWrite(image, 0x11, '16M');
  assert.notEqual(held.status, 0, 'while Spindle serves the disk, its image lock refuses qemu-io');
  assert.match(held.stderr, /Failed to get "write" lock/);

  const status = await manager.withDisksReleased(id, async () => {
    const r = qemuIoWrite(image, 0x5a, '16M');
    assert.equal(r.status, 0, `qemu-io writes while the disk is released: ${r.stderr}`);
    return manager.get(id).state;
  });
  assert.equal(status, 'running', 'the VM stays running; only its disk I/O waited');
  const expected = createHash('md5').update(Buffer.alloc(MiB, 0x5a)).digest('hex');
  assert.equal(
    await dd('dd if=/dev/vda bs=1M skip=16 count=1 iflag=direct 2>/dev/null | md5sum'),
    expected,
    "the guest reads qemu-io's bytes",
  );
  assert.equal(
    await dd('dd if=/dev/vda bs=1M skip=8 count=1 iflag=direct 2>/dev/null | md5sum'),
    before,
    'its own earlier write is intact',
  );
  const afterWrite = await dd(
    'dd if=/dev/urandom of=/dev/vda bs=1M seek=24 count=1 oflag=direct conv=fsync 2>/dev/null; dd if=/dev/vda bs=1M skip=24 count=1 iflag=direct 2>/dev/null | md5sum',
  );
  assert.equal(hostMd5(image, 24 * MiB, MiB), afterWrite, 'the reopened disk server serves the guest’s new writes');
  assert.equal((await agent.run('dmesg | grep -ci "i/o error"')).output.trim().split('\n').at(-1), '0', 'no I/O error in the guest');
  assert.equal(qemuIoWrite(image, 0x11, '16M').status === 0, false, 'the lock is back once reopened');

  // A guest the user paused: refused (QEMU before 9.1 would not reconnect the disk), and nothing changes.
  await manager.pause(id);
  await assert.rejects(
    manager.withDisksReleased(id, async () => undefined),
    /VM 'rel' is paused; resume it or shut it down first/,
  );
  assert.equal(manager.get(id).state, 'paused');
  await manager.resume(id);
  assert.equal(await dd('dd if=/dev/vda bs=1M skip=24 count=1 iflag=direct 2>/dev/null | md5sum'), afterWrite);
});
