// README claims about the VM API that no other test checked, in one scenario with one guest
// (createBackend's router, real QEMU, the test guest, a disk served by Spindle): vm.update while
// stopped reaches the next boot and is refused while running (but a rename is not); a live cache
// switch under fio verify really reopens the image with O_DIRECT; vm.reset reboots the guest,
// which keeps its data; vm.delete is refused while running, then removes the VM's file and never
// the disk image.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../electron/api/backend.js';
import type { VmInfo } from '../../electron/shared/api.js';
import { makeFile } from '../lib/loop.js';
import { waitFor } from '../lib/wait.js';
import { guestBoot, GuestAgent } from './vm-guest.js';

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'spindle-vmapi-'));
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_DATA_HOME: join(dir, 'data'), XDG_RUNTIME_DIR: join(dir, 'run') };
const backend = createBackend({ env });
const boot = await guestBoot();
after(async () => {
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
});

const call = <T = VmInfo>(method: string, params: unknown): Promise<T> => backend.router.call(method, params) as Promise<T>;

/** Files under `root` (recursively). */
const filesUnder = (root: string): string[] =>
  !existsSync(root) ? [] : readdirSync(root, { recursive: true, encoding: 'utf8' }).map((f) => join(root, f));

/** For each descriptor of this process open on `path`: does it have O_DIRECT (fdinfo flags, octal 040000)? */
function directFlags(path: string): boolean[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) !== path) return [];
      const flags = parseInt(/^flags:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
      return [(flags & 0o40000) !== 0];
    } catch {
      return [];
    }
  });
}

const md5Of = (path: string, offset: number, length: number): string =>
  createHash('md5')
    .update(readFileSync(path).subarray(offset, offset + length))
    .digest('hex');

test('vm.update, a live cache switch under fio verify, vm.reset and vm.delete on a real guest', async () => {
  const img = makeFile(join(dir, 'c0.img'), 48 * MiB);
  const created = await call('vm.create', {
    name: 'Api C',
    memoryMiB: 256,
    display: 'none',
    network: { user: false },
    boot,
    disks: [{ path: img }],
  });
  const id = created.config.id;
  const vmFile = filesUnder(join(dir, 'cfg')).find((f) => f.endsWith(`${id}.json`));
  assert.ok(vmFile, `the VM's file under ${join(dir, 'cfg')}`);

  // ── vm.update while stopped: saved, and what QEMU gets on the next boot.
  const updated = await call('vm.update', { id, patch: { name: 'Api C2', memoryMiB: 200, cpus: 2 } });
  assert.deepEqual([updated.config.name, updated.config.memoryMiB, updated.config.cpus], ['Api C2', 200, 2]);
  assert.equal(JSON.parse(readFileSync(vmFile, 'utf8')).memoryMiB, 200, 'the change is in the VM file');
  await assert.rejects(call('vm.update', { id, patch: { memoryMiB: 16 } }), /memoryMiB|memory/i, 'a bad value is refused');

  const g = new GuestAgent(backend.manager, id);
  try {
    const started = await call('vm.start', { id });
    assert.equal(started.state, 'running');
    await g.ready();
    const memKiB = Number(/MemTotal:\s+(\d+)/.exec(await g.runOk('cat /proc/meminfo'))![1]);
    assert.ok(memKiB > 100 * 1024 && memKiB <= 200 * 1024, `the guest has the updated 200 MiB (MemTotal ${memKiB} kB)`);
    assert.equal((await g.runOk('grep -c ^processor /proc/cpuinfo')).trim(), '2', 'the guest has the updated 2 CPUs');
    // While running: memory is refused with the reason and changes nothing; a rename is allowed.
    await assert.rejects(call('vm.update', { id, patch: { memoryMiB: 300 } }), /is running; shut it down to change the memory size/);
    assert.equal((await call('vm.get', { id })).config.memoryMiB, 200);
    assert.equal((await call('vm.update', { id, patch: { name: 'Api C3' } })).config.name, 'Api C3');
    // vm.delete while running is refused and deletes nothing.
    await assert.rejects(call('vm.delete', { id }), /is running; shut it down before deleting it/);
    assert.ok(existsSync(vmFile));

    // ── Live cache switch writeback -> none under fio verify: the image is reopened with O_DIRECT.
    assert.ok(directFlags(img).length > 0, 'the image is open in this process');
    assert.ok(!directFlags(img).includes(true), 'writeback: no O_DIRECT descriptor yet');
    const dev = (await g.runOk('for d in /sys/block/vd*; do [ "$(cat $d/serial)" = spindle-d0 ] && echo ${d##*/}; done')).trim();
    assert.match(dev, /^vd[a-z]$/);
    await g.runOk(
      `(/usr/bin/fio --name=v --filename=/dev/${dev} --size=32M --rw=randwrite --bs=16k --ioengine=libaio --iodepth=8 --direct=1 ` +
        `--verify=crc32c --do_verify=1 --verify_fatal=1 --loops=3 > /tmp/fio.out 2>&1; echo "exit $?" >> /tmp/fio.out) &`,
    );
    // Switch while fio is writing (its first writes have completed).
    const writesDone = async (): Promise<number> => Number((await g.runOk(`cat /sys/block/${dev}/stat`)).trim().split(/\s+/)[4]);
    await waitFor(async () => (await writesDone()) > 100, {
      timeoutMs: 120_000,
      intervalMs: 500,
      what: 'fio to have written 100 requests',
    });
    const switched = await call('disk.set', { vmId: id, diskId: 'd0', patch: { cache: 'none' } });
    assert.equal(switched.config.disks[0]!.cache, 'none');
    assert.equal(switched.disks[0]!.state, 'serving');
    assert.ok(directFlags(img).includes(true), 'cache none: the I/O descriptor has O_DIRECT');
    let fio = '';
    await waitFor(async () => /exit \d+/.test((fio = await g.runOk('cat /tmp/fio.out'))), {
      timeoutMs: 400_000,
      intervalMs: 1000,
      what: 'fio to finish across the cache switch',
      detail: () => fio,
    });
    assert.match(fio, /exit 0/, fio);
    assert.match(fio, /err= 0/, fio);

    // ── vm.reset: the guest reboots (the agent comes up again) and keeps what it wrote.
    const data = (
      await g.runOk(
        `dd if=/dev/urandom of=/dev/${dev} bs=1M seek=40 count=4 oflag=direct conv=fsync 2>/dev/null && dd if=/dev/${dev} bs=1M skip=40 count=4 iflag=direct 2>/dev/null | md5sum`,
      )
    ).split(' ')[0]!;
    const uptime = Number((await g.runOk('cut -d. -f1 /proc/uptime')).trim());
    const mark = g.mark();
    const reset = await call('vm.reset', { id });
    assert.equal(reset.state, 'running');
    assert.equal(reset.pid, started.pid, 'the same QEMU process (a reset, not a restart)');
    await g.ready(mark);
    const after = Number((await g.runOk('cut -d. -f1 /proc/uptime')).trim());
    assert.ok(after < uptime || after < 120, `the guest booted again (uptime ${uptime} s before, ${after} s after)`);
    assert.equal(
      (await g.runOk(`dd if=/dev/${dev} bs=1M skip=40 count=4 iflag=direct 2>/dev/null | md5sum`)).split(' ')[0],
      data,
      'data kept across the reset',
    );
    assert.equal((await call('vm.get', { id })).disks[0]!.state, 'serving');

    // ── Stop, then vm.delete: the VM and its file go, the disk image and its data stay.
    await call('vm.forceOff', { id });
    await waitFor(async () => (await call('vm.get', { id })).state === 'stopped', { timeoutMs: 60_000, what: 'the VM to stop' });
    // Without deleteDisks every disk image is kept, and the answer says so, file by file.
    assert.deepEqual(await call('vm.delete', { id }), { ok: true, deletedFiles: [], keptFiles: [{ path: img, reason: 'kept as asked.' }] });
    assert.ok(!existsSync(vmFile), 'the VM file is gone');
    assert.deepEqual(
      (await call<{ vms: VmInfo[] }>('vm.list', {})).vms.map((v) => v.config.id),
      [],
    );
    await assert.rejects(call('vm.get', { id }), (e: { code?: string }) => e.code === 'NOT_FOUND');
    assert.ok(existsSync(img), 'the disk image is never deleted');
    assert.equal(md5Of(img, 40 * MiB, 4 * MiB), data, "the image still holds the guest's data");
  } finally {
    g.close();
  }
});
