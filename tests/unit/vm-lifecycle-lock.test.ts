// The running VM's state table (electron/host/vm/vm-state.ts) and the one lock per VM
// (electron/host/vm/vm-lock.ts) that every lifecycle call of the VM manager runs under.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmState } from '../../electron/shared/api.js';
import { SpindleError } from '../../electron/shared/errors.js';
import { VM_TRANSITIONS, checkedTransition } from '../../electron/host/vm/vm-state.js';
import { VmLocks } from '../../electron/host/vm/vm-lock.js';
import { VmManager } from '../../electron/host/vm/manager.js';
import { VmStore } from '../../electron/host/vm/store.js';
import type { DiskHost } from '../../electron/host/vm/disk-host.js';

// Written out here, not read from the table: the moves the manager makes (launch and QMP RESUME,
// STOP and pause, SHUTDOWN and shutdown, a repeated shutdown, QEMU's exit from any live state).
const ALLOWED = new Set([
  'starting>running',
  'starting>shutting-down',
  'starting>stopped',
  'starting>crashed',
  'running>paused',
  'running>shutting-down',
  'running>stopped',
  'running>crashed',
  'paused>running',
  'paused>shutting-down',
  'paused>stopped',
  'paused>crashed',
  'shutting-down>shutting-down',
  'shutting-down>stopped',
  'shutting-down>crashed',
]);

test('every move the table does not list is refused with INTERNAL; the listed ones pass', () => {
  let refused = 0;
  for (const from of VmState.options) {
    for (const to of VmState.options) {
      if (ALLOWED.has(`${from}>${to}`)) {
        assert.equal(checkedTransition(from, to, 'vm'), to, `${from} -> ${to} is allowed`);
        continue;
      }
      assert.throws(
        () => checkedTransition(from, to, 'demo'),
        (e: unknown) => {
          assert.ok(e instanceof SpindleError, `${from} -> ${to}: a SpindleError`);
          assert.equal(e.code, 'INTERNAL');
          assert.equal(e.message, `VM 'demo' cannot go from '${from}' to '${to}'.`);
          return true;
        },
      );
      refused++;
    }
  }
  assert.equal(refused, 36 - ALLOWED.size);
  const listed = Object.entries(VM_TRANSITIONS).flatMap(([from, tos]) => tos.map((to) => `${from}>${to}`));
  assert.deepEqual(listed.sort(), [...ALLOWED].sort(), 'the table holds exactly the allowed moves');
});

test('calls on one VM run one after the other in the order issued, even after a failure; other VMs do not wait', async () => {
  const locks = new VmLocks();
  const order: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const first = locks.run('a', async () => {
    order.push('a1 begins');
    await gate;
    order.push('a1 ends');
    throw new Error('a1 failed');
  });
  const second = locks.run('a', async () => {
    order.push('a2');
    return 2;
  });
  const other = locks.run('b', async () => {
    order.push('b1');
    return 'b';
  });
  assert.equal(await other, 'b', 'VM b ran while VM a was busy');
  assert.equal(locks.busy('a'), true);
  release();
  await assert.rejects(first, /a1 failed/);
  assert.equal(await second, 2);
  assert.deepEqual(order, ['a1 begins', 'b1', 'a1 ends', 'a2']);
  await new Promise((r) => setImmediate(r));
  assert.equal(locks.busy('a'), false, 'an idle VM holds no lock entry');
});

test('a pause, resume, reset, shutdown or force-off issued while a start is in flight runs after the start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-vmlock-'));
  try {
    const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_DATA_HOME: join(dir, 'data'), XDG_RUNTIME_DIR: join(dir, 'run') };
    const image = join(dir, 'a.img');
    writeFileSync(image, Buffer.alloc(1 << 20));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let serving!: () => void;
    const started = new Promise<void>((r) => (serving = r));
    // The disk "server" holds the start in flight until released, then fails it (no QEMU is needed).
    const manager = new VmManager({
      store: new VmStore(join(dir, 'vms')),
      env,
      qemuBinary: '/bin/true',
      diskHostFactory: async (): Promise<DiskHost> => {
        serving();
        await gate;
        throw new Error('the test stops the start here');
      },
    });
    const vm = await manager.create({
      name: 'locked',
      cpus: 1,
      memoryMiB: 64,
      firmware: 'bios',
      boot: { kind: 'disk' },
      disks: [{ path: image }],
      network: { user: false },
      display: 'none',
    });
    const id = vm.config.id;
    const settled: string[] = [];
    const track = (name: string, p: Promise<unknown>) =>
      p.then(
        () => settled.push(`${name} ok`),
        (e: Error) => (settled.push(name), e),
      );
    const start = track('start', manager.start(id));
    const deadline = setTimeout(() => release(), 60_000); // never hang the suite
    await started;
    assert.equal(manager.get(id).state, 'starting');
    const calls = {
      pause: track('pause', manager.pause(id)),
      resume: track('resume', manager.resume(id)),
      reset: track('reset', manager.reset(id)),
      shutdown: track('shutdown', manager.shutdown(id, 1000)),
      forceOff: track('forceOff', manager.forceOff(id)),
    };
    // Give the queued calls every chance to run early (they would refuse at once: 'still starting').
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(settled, [], 'nothing ran while the start was in flight');
    release();
    clearTimeout(deadline);
    const startErr = await start;
    assert.match(String(startErr), /Disk d0 .* could not be served: the test stops the start here/);
    const errs = await Promise.all(Object.values(calls));
    assert.deepEqual(
      settled,
      ['start', 'pause', 'resume', 'reset', 'shutdown', 'forceOff'],
      'each call ran after the start, in the order issued',
    );
    for (const e of errs.slice(0, 4)) assert.match(String(e), /VM 'locked' is not running, so it cannot/);
    assert.match(String(errs[4]), /VM 'locked' is not running\./);
    assert.equal(manager.get(id).state, 'stopped');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
