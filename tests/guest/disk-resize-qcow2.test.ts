// Live resize of a qcow2 disk seen by a real guest (issue 15 §3): needs the qcow2 format driver
// (electron/dataplane/format/) serving the disk and implementing BlockDevice.resize. One boot: the
// guest writes data, the disk grows from 32 MiB to 64 MiB while it runs, /sys/block/vdX/size
// changes, the guest writes past the old end and reads it back; after poweroff qemu-img check is
// clean, the virtual size is the new one, and QEMU's own reading of the image (qemu-img convert)
// has what the guest wrote. Shrinking is refused with a sentence.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../electron/api/backend.js';
import type { VmInfo } from '../../electron/shared/api.js';
import { guestBoot, guestDevOf, GuestAgent, waitGuestSectors } from './vm-guest.js';

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'spindle-resize-q-'));
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_DATA_HOME: join(dir, 'data'), XDG_RUNTIME_DIR: join(dir, 'run') };
const backend = createBackend({ env });
const boot = await guestBoot();
after(async () => {
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
});
const call = <T = VmInfo>(method: string, params: unknown): Promise<T> => backend.router.call(method, params) as Promise<T>;

function qemuImg(...args: string[]): string {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `qemu-img ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

test('a qcow2 disk grows while the guest runs; the guest sees and uses the new space; qemu-img check stays clean', async () => {
  const img = join(dir, 'd0.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', img, '32M');
  const created = await call('vm.create', {
    name: 'Resize qcow2',
    memoryMiB: 256,
    display: 'none',
    network: { user: false },
    boot,
    disks: [{ path: img }],
  });
  const id = created.config.id;
  assert.equal(created.config.disks[0]!.format, 'qcow2');
  const g = new GuestAgent(backend.manager, id);
  try {
    await call('vm.start', { id });
    await g.ready();
    const vda = await guestDevOf(g, 'spindle-d0');
    await waitGuestSectors(g, vda, (32 * MiB) / 512, 5000);
    const low = (
      await g.runOk(
        `dd if=/dev/urandom of=${vda} bs=1M seek=4 count=4 oflag=direct conv=fsync 2>/dev/null; dd if=${vda} bs=1M skip=4 count=4 iflag=direct 2>/dev/null | md5sum`,
      )
    )
      .trim()
      .split(' ')[0]!;

    const grown = await call('disk.resize', { vmId: id, diskId: 'd0', sizeBytes: 64 * MiB });
    assert.equal(grown.disks[0]!.sizeBytes, 64 * MiB);
    await waitGuestSectors(g, vda, (64 * MiB) / 512);
    const high = (
      await g.runOk(
        `dd if=/dev/urandom of=${vda} bs=1M seek=56 count=4 oflag=direct conv=fsync 2>/dev/null; dd if=${vda} bs=1M skip=56 count=4 iflag=direct 2>/dev/null | md5sum`,
      )
    )
      .trim()
      .split(' ')[0]!;
    await assert.rejects(call('disk.resize', { vmId: id, diskId: 'd0', sizeBytes: 16 * MiB }), /shrinking a disk is refused/);

    g.fire('sync; poweroff -f');
    const deadline = Date.now() + 60_000;
    while ((await call('vm.get', { id })).state !== 'stopped') {
      if (Date.now() > deadline) throw new Error('the VM did not stop within 60 s of poweroff');
      await new Promise((r) => setTimeout(r, 100));
    }
    qemuImg('check', '-f', 'qcow2', img);
    assert.equal(
      (JSON.parse(qemuImg('info', '--output=json', '-f', 'qcow2', img)) as { 'virtual-size': number })['virtual-size'],
      64 * MiB,
    );
    // QEMU's own qcow2 driver reads what the guest wrote, below and past the old end.
    const flat = join(dir, 'flat.raw');
    qemuImg('convert', '-f', 'qcow2', '-O', 'raw', img, flat);
    for (const [off, md5] of [
      [4, low],
      [56, high],
    ] as const) {
      const sum = spawnSync('sh', ['-c', `dd if=${flat} bs=1M skip=${off} count=4 2>/dev/null | md5sum`], {
        encoding: 'utf8',
      }).stdout.split(' ')[0];
      assert.equal(sum, md5, `QEMU reads the guest's data at ${off} MiB`);
    }
  } finally {
    g.close();
  }
});
