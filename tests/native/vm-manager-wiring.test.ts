// The VM manager wires the disk servers' safety mechanisms (issue 6 §4, §5), checked through the
// API router against a real QEMU (TCG, SeaBIOS finding nothing to boot: no guest OS is needed for
// these) and real disk servers (Spindle's own, one IOThread per disk):
// - peer check: the disk starts with awaitPeer and is told QEMU's pid right after spawn; QEMU is
//   served, a connection from another process is refused and the refusal is a disk event;
// - full filesystem (enospc 'stop'): on the disk's no-space event the manager pauses the VM and
//   shows the sentence; vm.resume resubmits the parked writes, then continues the VM. The event is
//   emitted here on the real ServedDisk by the test (a stand-in for the worker's, whose path from a
//   full ext4 is tested in enospc-disk-server.test.ts): a guest that fills a disk needs a guest OS;
// - host faults: deleting the image file of a running disk becomes an error disk event.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../electron/api/backend.js';
import type { VmInfo } from '../../electron/api/contract.js';
import { servedDiskFactory, type ServedDisk } from '../../electron/vm/served-disk.js';
import type { DiskServeSpec } from '../../electron/vm/disk-host.js';
import { runLoadgen } from '../../electron/cli/loadgen.js';
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

    // Full filesystem: the manager pauses the VM and says why.
    let resumed = 0;
    const realResume = host.resumeParked.bind(host);
    host.resumeParked = () => (resumed++, realResume());
    const sentence = `The filesystem holding ${image} is full: the VM is paused until space is freed.`;
    host.emit('event', { level: 'warning', message: sentence, noSpace: true });
    const paused = await until('the VM paused', async () => {
      const v = await call('vm.get', { id: vm.config.id });
      return v.state === 'paused' ? v : null;
    });
    assert.equal(paused.pauseReason, sentence);
    assert.deepEqual({ state: paused.disks[0]!.state, message: paused.disks[0]!.message }, { state: 'no-space', message: sentence });
    assert.ok(diskEvents.some((e) => e.level === 'warning' && e.message === sentence), 'the sentence is a disk event too');
    assert.equal(resumed, 0, 'nothing is resubmitted before the user (or free space) resumes');

    const back = await call('vm.resume', { id: vm.config.id });
    assert.equal(resumed, 1, 'resume submitted the parked writes again');
    assert.equal(back.state, 'running');
    assert.equal(back.pauseReason, undefined);
    assert.equal(back.disks[0]!.state, 'serving');

    // The image file is deleted under the running disk: an error event names it.
    unlinkSync(image);
    await until('the fault event', () => diskEvents.some((e) => e.level === 'error' && e.message.includes(`The image file ${image} was deleted or moved`)), 10_000);
  } finally {
    await call('vm.forceOff', { id: vm.config.id });
  }
  assert.equal((await call('vm.get', { id: vm.config.id })).state, 'stopped');
});
