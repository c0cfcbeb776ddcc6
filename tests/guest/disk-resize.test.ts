// Live resize seen by a real guest: the VM manager through the API, real QEMU, the project's test
// guest, one boot. A raw image file and a host block device (a loop device) grow while the guest
// runs: /sys/block/vdX/size changes (vhost-user BACKEND_CONFIG_CHANGE_MSG -> QEMU's GET_CONFIG ->
// virtio config interrupt) and the guest writes and reads back data in the new space; shrinking
// is refused with a sentence; a device that has not grown yet is refused too.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync, truncateSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../electron/api/backend.js';
import type { VmInfo } from '../../electron/shared/api.js';
import { attachLoop, makeFile } from '../lib/loop.js';
import { guestBoot, guestDevOf, GuestAgent, waitGuestSectors } from './vm-guest.js';

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'spindle-resize-'));
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_DATA_HOME: join(dir, 'data'), XDG_RUNTIME_DIR: join(dir, 'run') };
const backend = createBackend({ env });
const boot = await guestBoot();
const loopFile = makeFile(join(dir, 'loop-backing.img'), 32 * MiB, { written: true });
const loop = attachLoop(loopFile);
after(async () => {
  await backend.close();
  loop.detach();
  rmSync(dir, { recursive: true, force: true });
});

const call = <T = VmInfo>(method: string, params: unknown): Promise<T> => backend.router.call(method, params) as Promise<T>;
const diskLines: string[] = [];
backend.router.subscribe('disk.events', {}, (e) =>
  diskLines.push(`${(e as { diskId: string }).diskId}: ${(e as { message: string }).message}`),
);

/** 4 MiB of fresh random data written at `offsetMiB` with O_DIRECT and fsync, read back; its md5. */
async function writeVerified(g: GuestAgent, dev: string, offsetMiB: number): Promise<string> {
  const out = await g.runOk(
    `dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null && dd if=/tmp/pat of=${dev} bs=1M seek=${offsetMiB} oflag=direct conv=fsync 2>&1 && ` +
      `a=$(md5sum < /tmp/pat) && b=$(dd if=${dev} bs=1M skip=${offsetMiB} count=4 iflag=direct 2>/dev/null | md5sum) && echo "MD5 $a|$b"`,
  );
  const [a, b] = /MD5 (.*)/
    .exec(out)![1]!
    .split('|')
    .map((s) => s.split(' ')[0]);
  assert.equal(b, a, `read back from ${dev} at ${offsetMiB} MiB what was written`);
  return a!;
}

function hostMd5(path: string, offsetMiB: number): string {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(4 * MiB);
    assert.equal(readSync(fd, buf, 0, buf.length, offsetMiB * MiB), buf.length);
    return createHash('md5').update(buf).digest('hex');
  } finally {
    closeSync(fd);
  }
}

test('a raw image and a block device grow while the guest runs; the guest sees and uses the new space; shrink refused', async () => {
  const img = makeFile(join(dir, 'd0.img'), 32 * MiB);
  const created = await call('vm.create', {
    name: 'Resize',
    memoryMiB: 256,
    display: 'none',
    network: { user: false },
    boot,
    disks: [{ path: img }, { path: loop.device }],
  });
  const id = created.config.id;
  assert.deepEqual(
    created.config.disks.map((d) => d.format),
    ['raw', 'raw'],
  );
  const g = new GuestAgent(backend.manager, id);
  try {
    await call('vm.start', { id });
    await g.ready();
    const vda = await guestDevOf(g, 'spindle-d0');
    const vdb = await guestDevOf(g, 'spindle-d1');
    await waitGuestSectors(g, vda, (32 * MiB) / 512, 5000);

    // ── Image file: 32 MiB -> 64 MiB live.
    const grown = await call('disk.resize', { vmId: id, diskId: 'd0', sizeBytes: 64 * MiB });
    assert.equal(grown.disks.find((d) => d.id === 'd0')!.sizeBytes, 64 * MiB, 'the API reports the new size');
    assert.equal(statSync(img).size, 64 * MiB, 'the file grew');
    await waitGuestSectors(g, vda, (64 * MiB) / 512);
    assert.ok(
      diskLines.some((l) => l.startsWith('d0: ') && /grew to 64 MiB; the guest was told/.test(l)),
      `the event says the guest was told: ${diskLines.join('\n')}`,
    );
    const md5 = await writeVerified(g, vda, 56);
    assert.equal(hostMd5(img, 56), md5, 'the data the guest wrote past the old end is in the file');

    // ── Shrink: refused with a sentence; nothing changes.
    await assert.rejects(call('disk.resize', { vmId: id, diskId: 'd0', sizeBytes: 16 * MiB }), (err: Error) => {
      assert.match(err.message, /shrinking a disk is refused/);
      return true;
    });
    assert.equal(statSync(img).size, 64 * MiB, 'a refused shrink leaves the file');
    assert.equal((await g.runOk(`cat /sys/block/${vda.slice(5)}/size`)).trim(), String((64 * MiB) / 512));

    // ── Block device: refused until the device itself has grown; then the guest sees its new size.
    await assert.rejects(call('disk.resize', { vmId: id, diskId: 'd1', sizeBytes: 48 * MiB }), (err: Error) => {
      assert.match(err.message, /grow the device itself first/);
      return true;
    });
    truncateSync(loopFile, 48 * MiB);
    const r = spawnSync('losetup', ['-c', loop.device], { encoding: 'utf8' });
    assert.equal(r.status, 0, `losetup -c: ${r.stderr}`);
    await call('disk.resize', { vmId: id, diskId: 'd1', sizeBytes: 48 * MiB });
    await waitGuestSectors(g, vdb, (48 * MiB) / 512);
    const md5b = await writeVerified(g, vdb, 40);
    assert.equal(hostMd5(loop.device, 40), md5b, 'the data the guest wrote on the grown device is on it');

    // ── The guest uses the whole new disk: a filesystem over all 64 MiB, checked clean.
    await g.runOk(`mkfs.ext4 -q -F ${vda} && e2fsck -fn ${vda}`, 180_000);

    g.fire('sync; poweroff -f');
    const deadline = Date.now() + 60_000;
    while ((await call('vm.get', { id })).state !== 'stopped') {
      if (Date.now() > deadline) throw new Error('the VM did not stop within 60 s of poweroff');
      await new Promise((res) => setTimeout(res, 100));
    }
    // ── Stopped: the image itself grows (no disk server), and the next boot would see it.
    await call('disk.resize', { vmId: id, diskId: 'd0', sizeBytes: 80 * MiB });
    assert.equal(statSync(img).size, 80 * MiB);
  } finally {
    g.close();
  }
});
