// The VM manager wires the disk servers' safety mechanisms, checked through the
// API router against a real QEMU (TCG, SeaBIOS finding nothing to boot: no guest OS is needed for
// these) and real disk servers (Spindle's own, one IOThread per disk):
// - peer check: the disk starts with awaitPeer and is told QEMU's pid right after spawn; QEMU is
//   served, a connection from another process is refused and the refusal is a disk event;
// - full filesystem (enospc 'stop'): on the disk's no-space event the manager pauses the VM and
//   says why and what is missing; on space-recovered it resumes the VM it paused (not one the user
//   paused); vm.resume retries the parked writes first. The events are emitted here on the real
//   ServedDisk by the test (stand-ins for the worker's, whose path from a full ext4 is tested in
//   enospc-disk-server.test.ts, and with a real guest in tests/guest/enospc.test.ts);
// - host faults: deleting the image file of a running disk becomes an error disk event.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../electron/api/backend.js';
import type { VmInfo } from '../../electron/shared/api.js';
import { servedDiskFactory, type ServedDisk } from '../../electron/host/vm/served-disk.js';
import type { DiskHostEvent, DiskServeSpec } from '../../electron/host/vm/disk-host.js';
import { runLoadgen } from '../../electron/tools/loadgen.js';
import { makeFile } from '../lib/loop.js';

const dir = mkdtempSync(join(tmpdir(), 'spindle-wiring-'));
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_DATA_HOME: join(dir, 'data'), XDG_RUNTIME_DIR: join(dir, 'run') };
const hosts: Array<{ spec: DiskServeSpec; host: ServedDisk }> = [];
const backend = createBackend({
  env,
  diskHostFactory: async (spec) => {
    const host = await servedDiskFactory(spec);
    hosts.push({ spec, host });
    return host;
  },
});
after(async () => {
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
});

const call = <T = VmInfo>(method: string, params: unknown): Promise<T> => backend.router.call(method, params) as Promise<T>;
const diskEvents: Array<{ vmId: string; diskId: string; level: string; message: string }> = [];
backend.router.subscribe('disk.events', {}, (e) => diskEvents.push(e as (typeof diskEvents)[number]));

async function until<T>(what: string, probe: () => T | Promise<T>, timeoutMs = 30_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('peer check, full-disk pause/resume and a deleted image, through the manager with a real QEMU', async () => {
  const image = makeFile(join(dir, 'a.img'), 16 << 20);
  const created = await call('vm.create', { name: 'wiring', memoryMiB: 64, display: 'none', network: { user: false }, disks: [{ path: image }] });
  assert.equal(created.config.disks[0]!.enospc, 'stop', 'the default policy');
  const vm = await call('vm.start', { id: created.config.id });
  try {
    assert.equal(vm.state, 'running');
    const { spec, host } = hosts.at(-1)!;
    assert.equal(spec.awaitPeer, true, 'a VM start serves its disks to nobody until QEMU is named');
    assert.equal(spec.enospc, 'stop', 'the policy reaches the disk server');

    // QEMU is accepted: it connected with its own pid.
    await until('QEMU connected', () => diskEvents.some((e) => e.message === `QEMU connected (pid ${vm.pid}).`));
    // Another process (this one) is refused, and the refusal is a disk event.
    await assert.rejects(runLoadgen({
      socket: spec.socketPath, rw: 'randread', bs: 4096, iodepth: 1, queues: 1, runtimeSec: 0.2, size: 0,
      verify: false, verifyOnly: false, rwmixread: 100, seed: 1,
    }));
    await until('the refusal event', () => diskEvents.some((e) => e.message.includes(`refused a frontend connection from pid ${process.pid} (uid ${process.getuid!()}): not the process this disk belongs to`)));
    assert.equal((await call('vm.get', { id: vm.config.id })).state, 'running', 'QEMU kept its disk');

    // Full filesystem: the manager pauses the VM and says why and what is missing.
    let retries = 0;
    const realRetry = host.retryParked.bind(host);
    host.retryParked = () => (retries++, realRetry());
    const vmId = vm.config.id;
    const get = () => call('vm.get', { id: vmId });
    const space = { parkedRequests: 3, parkedBytes: 3 << 20, freeBytes: 1 << 20, missingBytes: 2 << 20 };
    const full = (): void => {
      host.emit('event', { kind: 'no-space', retried: false, sentence: '', parked: 3, parkedBytes: 3 << 20, freeBytes: 1 << 20, missingBytes: 2 << 20 } satisfies DiskHostEvent);
    };
    full();
    const paused = await until('the VM paused', async () => {
      const v = await get();
      return v.state === 'paused' && v.pauseReason ? v : null;
    });
    assert.equal(paused.pauseReason, `Spindle paused the VM because the filesystem holding ${image} is full. It resumes by itself once space is freed there and the waiting writes are written.`);
    assert.deepEqual(paused.waitingForSpace?.map(({ since, ...w }) => (assert.ok(!Number.isNaN(Date.parse(since))), w)), [{ diskId: 'd0', path: image, ...space }]);
    assert.equal(paused.disks[0]!.state, 'no-space');
    assert.ok(diskEvents.some((e) => e.level === 'warning' && e.message.includes('wait for 2 MiB more free space')), 'the sentence is a disk event too');
    assert.equal(retries, 0, 'nothing is retried before the user (or free space) resumes');
    // The numbers change while it waits: no log line, the VM's state says it.
    const lines = diskEvents.length;
    host.emit('event', { kind: 'space-wait', parked: 3, parkedBytes: 3 << 20, freeBytes: 2 << 20, missingBytes: 1 << 20 } satisfies DiskHostEvent);
    await until('the update', async () => (await get()).waitingForSpace?.[0]?.missingBytes === 1 << 20);
    assert.equal(diskEvents.length, lines, 'no log line for a status update');

    // Space freed, the writes written (the IOThread says so): the VM Spindle paused goes on by itself.
    host.emit('event', { kind: 'space-recovered', completed: 3, dropped: 0, waitedMs: 2000 } satisfies DiskHostEvent);
    const resumed = await until('the VM resumed by itself', async () => {
      const v = await get();
      return v.state === 'running' ? v : null;
    });
    assert.equal(resumed.pauseReason, undefined);
    assert.equal(resumed.waitingForSpace, undefined);
    assert.equal(resumed.disks[0]!.state, 'serving');
    assert.equal(retries, 0);

    // Paused by the user, then a disk fills and space comes back: it stays paused (it is theirs).
    await call('vm.pause', { id: vmId });
    full();
    await until('the disk waiting', async () => (await get()).waitingForSpace?.length === 1);
    host.emit('event', { kind: 'space-recovered', completed: 3, dropped: 0, waitedMs: 2000 } satisfies DiskHostEvent);
    await until('the wait cleared', async () => (await get()).waitingForSpace === undefined);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await get()).state, 'paused', 'the user paused it: free space does not resume it');

    // vm.resume with writes waiting retries them first (nothing is parked in the real disk server, so it goes on).
    full();
    await until('the disk waiting', async () => (await get()).waitingForSpace?.length === 1);
    const back = await call('vm.resume', { id: vmId });
    assert.equal(retries, 1, 'resume retried the parked writes');
    assert.equal(back.state, 'running');
    assert.equal(back.pauseReason, undefined);
    assert.equal(back.waitingForSpace, undefined);
    assert.equal(back.disks[0]!.state, 'serving');

    // Still full when the user resumes: the VM stays paused, and the refusal says what is missing.
    full();
    await until('the VM paused again', async () => (await get()).state === 'paused');
    host.retryParked = async () => (retries++, { retried: 3, parked: 3 });
    await assert.rejects(call('vm.resume', { id: vmId }), /stays paused: the filesystem holding .* is still full \(3 writes \(3 MiB\) wait for 2 MiB more free space\)/);
    assert.equal((await get()).state, 'paused');
    host.retryParked = realRetry;
    host.emit('event', { kind: 'space-recovered', completed: 3, dropped: 0, waitedMs: 2000 } satisfies DiskHostEvent);
    await until('the VM resumed by itself', async () => (await get()).state === 'running');

    // The image file is deleted under the running disk: an error event names it.
    unlinkSync(image);
    await until('the fault event', () => diskEvents.some((e) => e.level === 'error' && e.message.includes(`The image file ${image} was deleted or moved`)), 10_000);
  } finally {
    await call('vm.forceOff', { id: vm.config.id });
  }
  assert.equal((await call('vm.get', { id: vm.config.id })).state, 'stopped');
});
