// Per-disk I/O limits seen from a real guest: fio inside the test guest (one TCG boot) measures
// what a limited disk gives it, a live change through the API (disk.set, as the UI and
// `spindle vm set-disk --limits` call it) takes effect on the running VM, and data written under a
// limit verifies. Bounds are the limits plus their bursts and generous slack; never a tight timing.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../electron/api/backend.js';
import type { VmInfo } from '../../electron/shared/api.js';
import type { IoLimits } from '../../electron/shared/limits.js';
import { makeFile } from '../lib/loop.js';
import { guestBoot, GuestAgent } from './vm-guest.js';

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'spindle-limits-'));
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_DATA_HOME: join(dir, 'data'), XDG_RUNTIME_DIR: join(dir, 'run') };
const backend = createBackend({ env });
const boot = await guestBoot();
after(async () => {
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
});

const call = <T = VmInfo>(method: string, params: unknown): Promise<T> => backend.router.call(method, params) as Promise<T>;

interface FioSide {
  iops: number;
  bw_bytes: number;
}

/** Runs fio for `seconds` on the guest's disk; returns its read or write figures. */
async function fio(g: GuestAgent, dev: string, args: string, side: 'read' | 'write', seconds = 4): Promise<FioSide> {
  const out = await g.runOk(
    `/usr/bin/fio --name=lim --filename=${dev} --size=32M --direct=1 --ioengine=libaio --time_based --runtime=${seconds} ${args} --output-format=json 2>&1`,
    180_000,
  );
  const json = JSON.parse(out.slice(out.indexOf('{'), out.lastIndexOf('}') + 1)) as { jobs: Array<Record<'read' | 'write', FioSide>> };
  return json.jobs[0]![side];
}

test('fio in a guest stays under a disk limit; a live change raises it; data written under a limit verifies', async () => {
  const img = makeFile(join(dir, 'd0.img'), 64 * MiB, { written: true });
  const limits: IoLimits = { iopsWrite: 40 };
  const vm = await call('vm.create', {
    name: 'Limited',
    memoryMiB: 256,
    display: 'none',
    network: { user: false },
    boot,
    disks: [{ path: img, limits }],
  });
  const id = vm.config.id;
  assert.deepEqual(vm.config.disks[0]!.limits, limits, 'the limit is kept in the VM config');
  const g = new GuestAgent(backend.manager, id);
  try {
    await call('vm.start', { id });
    await g.ready();
    const dev = '/dev/vda';

    // 40 write IOPS from the config; reads are not limited by it.
    const slow = await fio(g, dev, '--rw=randwrite --bs=4k --iodepth=16', 'write');
    assert.ok(slow.iops <= 40 * 1.25 + 2, `writes stayed under 40 IOPS: ${slow.iops.toFixed(1)}`);
    assert.ok(slow.iops >= 40 * 0.5, `writes went on at the limit: ${slow.iops.toFixed(1)}`);
    const reads = await fio(g, dev, '--rw=randread --bs=4k --iodepth=16', 'read', 3);
    assert.ok(reads.iops > 40 * 2, `reads are not held to the write limit: ${reads.iops.toFixed(1)} IOPS`);

    // Live: 160 write IOPS and a 1 MiB/s read bandwidth limit, on the running VM.
    const changed = await call('disk.set', { vmId: id, diskId: 'd0', patch: { limits: { iopsWrite: 160, bpsRead: MiB } } });
    assert.equal(changed.state, 'running');
    const fast = await fio(g, dev, '--rw=randwrite --bs=4k --iodepth=16', 'write');
    assert.ok(fast.iops > slow.iops * 2, `the raised limit took effect: ${fast.iops.toFixed(1)} IOPS (was ${slow.iops.toFixed(1)})`);
    assert.ok(fast.iops <= 160 * 1.25 + 2, `and holds: ${fast.iops.toFixed(1)} IOPS`);
    const bw = await fio(g, dev, '--rw=read --bs=64k --iodepth=8', 'read');
    assert.ok(bw.bw_bytes <= MiB * 1.25 + 64 * 1024, `reads stayed under 1 MiB/s: ${(bw.bw_bytes / MiB).toFixed(2)} MiB/s`);
    assert.ok(bw.bw_bytes >= MiB * 0.5, `reads went on at the limit: ${(bw.bw_bytes / MiB).toFixed(2)} MiB/s`);

    // Data written with flushes under a tight limit reads back intact (crc32c verify, fsync every 8).
    await call('disk.set', { vmId: id, diskId: 'd0', patch: { limits: { iopsTotal: 80 } } });
    await g.runOk(
      `/usr/bin/fio --name=v --filename=${dev} --offset=40M --size=2M --rw=randwrite --bs=4k --ioengine=libaio --iodepth=16 --direct=1 ` +
        `--fsync=8 --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 > /tmp/v.out 2>&1 || { cat /tmp/v.out; exit 1; }`,
      240_000,
    );

    // Removing the limits ({}) returns the disk to full speed.
    const cleared = await call('disk.set', { vmId: id, diskId: 'd0', patch: { limits: {} } });
    assert.deepEqual(cleared.config.disks[0]!.limits, {});
    const free = await fio(g, dev, '--rw=randwrite --bs=4k --iodepth=16', 'write', 3);
    assert.ok(free.iops > 160 * 1.25 + 2 || free.iops > fast.iops * 1.2, `without limits writes go faster: ${free.iops.toFixed(1)} IOPS`);
  } finally {
    await call('vm.forceOff', { id }).catch(() => undefined);
  }
});
