// Linked clones and snapshots over Spindle's qcow2 driver with a real guest: a linked clone boots
// and its writes leave the source untouched; a snapshot taken on a running VM, then overwritten by
// the guest, brings the old bytes back on revert (read with qemu-img).
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmManager } from '../../electron/host/vm/manager.js';
import { VmStore } from '../../electron/host/vm/store.js';
import { methods } from '../../electron/shared/api.js';
import { guestBoot, GuestAgent } from './vm-guest.js';

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'spindle-qcow2-vm-'));
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_RUNTIME_DIR: join(dir, 'run'), XDG_DATA_HOME: join(dir, 'data') };
const manager = new VmManager({ store: new VmStore(join(dir, 'cfg', 'spindle', 'vms')), env });
after(async () => {
  await manager.stopAll(1000);
  rmSync(dir, { recursive: true, force: true });
});

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

/** 1 MiB of what the guest sees at `offsetMiB` of image `path` (format `fmt`), read by qemu-img. */
function imageMd5(path: string, fmt: string, offsetMiB: number): string {
  const out = join(dir, 'read.raw');
  execFileSync('qemu-img', ['convert', '-U', '-f', fmt, '-O', 'raw', path, out]);
  const fd = openSync(out, 'r');
  try {
    const b = Buffer.alloc(MiB);
    readSync(fd, b, 0, MiB, offsetMiB * MiB);
    return md5(b);
  } finally {
    closeSync(fd);
    rmSync(out);
  }
}

async function bootAndRun(id: string): Promise<{ agent: GuestAgent; dd: (cmd: string) => Promise<string> }> {
  const agent = new GuestAgent(manager, id);
  await manager.start(id);
  await agent.ready();
  return { agent, dd: (cmd) => agent.runOk(cmd).then((o) => o.trim().split('\n').at(-1)!.split(' ')[0]!) };
}

const writeAt = (mib: number) =>
  `dd if=/dev/urandom of=/dev/vda bs=1M seek=${mib} count=1 oflag=direct conv=fsync 2>/dev/null; dd if=/dev/vda bs=1M skip=${mib} count=1 iflag=direct 2>/dev/null | md5sum`;
const readAt = (mib: number) => `dd if=/dev/vda bs=1M skip=${mib} count=1 iflag=direct 2>/dev/null | md5sum`;

test('a linked clone boots, reads its base and writes only its overlay; a live snapshot reverts to the old bytes', async () => {
  const images = join(env.XDG_DATA_HOME, 'spindle', 'images');
  mkdirSync(images, { recursive: true });
  const base = join(images, 'src-d0.img');
  writeFileSync(base, '');
  truncateSync(base, 64 * MiB);
  const src = await manager.create(
    methods['vm.create'].params.parse({
      name: 'src',
      memoryMiB: 192,
      display: 'none',
      network: { user: false },
      boot: await guestBoot(),
      disks: [{ path: base }],
    }),
  );
  let s = await bootAndRun(src.config.id);
  const sourceData = await s.dd(writeAt(4));
  await manager.shutdown(src.config.id, 20_000);
  const baseBefore = md5(readFileSync(base));

  const clone = await manager.clone(src.config.id, 'clone', true);
  const id = clone.config.id;
  const overlay = clone.config.disks[0]!.path;
  const c = await bootAndRun(id);
  assert.equal(await c.dd(readAt(4)), sourceData, 'the clone reads its base');
  const cloneData = await c.dd(writeAt(8));
  assert.equal(imageMd5(overlay, 'qcow2', 8), cloneData, 'the write is in the overlay');

  // Live snapshot, then the guest overwrites, then revert (stopped) brings the snapshot's bytes back.
  await manager.snapshot(id, 'create', 'live');
  assert.equal(manager.get(id).state, 'running');
  const overwritten = await c.dd(writeAt(8));
  assert.notEqual(overwritten, cloneData);
  assert.equal(await c.dd(readAt(4)), sourceData, 'the guest keeps reading after the snapshot');
  await manager.shutdown(id, 20_000);
  assert.equal(imageMd5(overlay, 'qcow2', 8), overwritten);
  await manager.snapshot(id, 'revert', 'live');
  assert.equal(imageMd5(overlay, 'qcow2', 8), cloneData, 'revert brought the old bytes back');
  assert.equal(md5(readFileSync(base)), baseBefore, "the clone's writes left the source untouched");

  // The source is refused a start that would write its base; accepted, it boots.
  await assert.rejects(manager.start(src.config.id), /base of the linked clone 'clone'/);
  await manager.snapshot(id, 'delete', 'live');
  assert.deepEqual((await manager.snapshots(id)).snapshots, []);
  s = await bootAndRun(id);
  assert.equal(await s.dd(readAt(8)), cloneData, 'the reverted clone boots with the snapshot bytes');
});
