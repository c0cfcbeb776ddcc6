// The aio comparison through the API router on real files (O_DIRECT, real DiskServer IOThreads,
// loadgen over vhost-user), and its refusal of a disk a running VM (real QEMU, no guest) uses.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync, truncateSync, readFileSync, readdirSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { apiSetup, rejectsWith } from '../lib/api.js';
import { within } from '../lib/wait.js';
import { createBenchLayer } from '../../electron/api/bench-api.js';
import type { Result, TopicEvent, VmInfo } from '../../electron/shared/api.js';

type Progress = TopicEvent<'bench.progress'>;
type BenchResult = Result<'bench.result'>;

// /var/tmp: the comparison opens its images with O_DIRECT, so they must be on a disk, wherever TMPDIR points.
const setup = () => apiSetup('spindle-bench-api-', { base: '/var/tmp' });

function image(dir: string, name: string, bytes: number): string {
  const p = join(dir, name);
  writeFileSync(p, '');
  truncateSync(p, bytes);
  return p;
}

/** Starts a comparison, collects its progress events until it ends, returns both. */
async function runToEnd(router: ReturnType<typeof setup>['router'], params: unknown, onEvent?: (e: Progress, id: string) => void) {
  const { benchId } = (await router.call('bench.start', params)) as { benchId: string };
  const events: Progress[] = [];
  let off = (): void => {};
  const ended = new Promise<void>((resolve) => {
    off = router.subscribe('bench.progress', { benchId }, (e) => {
      const p = e as Progress;
      events.push(p);
      onEvent?.(p, benchId);
      if (p.state !== 'running') { off(); resolve(); }
    });
  });
  try {
    await within(ended, { timeoutMs: 300_000, what: `comparison ${benchId} to end`, detail: () => `last progress: ${JSON.stringify(events.at(-1))}` });
  } finally {
    off();
  }
  return { benchId, events, result: (await router.call('bench.result', { benchId })) as BenchResult };
}

test('the comparison on the scratch disk: progress, then 4 variants x 8 columns with throughput and CPU', async () => {
  const s = setup();
  try {
    const { events, result } = await runToEnd(s.router, { target: { kind: 'scratch' }, bytesPerRun: 1 << 20 });
    assert.equal(result.state, 'done', result.error);
    assert.equal(result.rows.length, 32);
    const variants = new Set(result.rows.map((r) => (r.nowait ? `${r.mode}+nowait` : r.mode)));
    assert.deepEqual([...variants], ['threads', 'native', 'native+nowait', 'io_uring']);
    const columns = new Set(result.rows.map((r) => `${r.op} ${r.recordBytes}`));
    assert.equal(columns.size, 8);
    for (const r of result.rows) {
      assert.ok(r.mbps > 0 && r.kbps! > 0 && r.iops > 0, `throughput of ${JSON.stringify(r)}`);
      assert.ok(r.cpuSec > 0, `CPU of ${JSON.stringify(r)}`);
      assert.equal(r.errors, 0);
      assert.equal(r.bytes, Math.max(r.recordBytes, 1 << 20));
    }
    assert.equal(result.settings?.iodepth, 1);
    assert.equal(result.settings?.directIo, true);
    assert.equal(result.settings?.freshSparseWrites, true);
    // Progress: a step per run, a row per run, fractions rising to 1, then one final event.
    assert.equal(events.filter((e) => e.row).length, 32);
    assert.ok(events.some((e) => e.step === 'native+nowait: write 16k'));
    const fractions = events.map((e) => e.fraction ?? 0);
    assert.deepEqual(fractions, [...fractions].sort((a, b) => a - b));
    assert.equal(events.at(-1)!.state, 'done');
    assert.equal(events.at(-1)!.fraction, 1);
    // The scratch image's data directory has no leftovers (backups are only for VM disks and paths).
    assert.deepEqual(readdirSync(join(s.dir, 'data', 'spindle')).filter((f) => f.startsWith('bench-backup')), []);
  } finally {
    await s.cleanup();
  }
});

test('cancel stops the run promptly, a second start while one runs is refused, and a new one can start after', async () => {
  const s = setup();
  try {
    let cancelled: Promise<unknown> | null = null;
    let conflict: Promise<unknown> | null = null;
    const t0 = Date.now();
    const { result } = await runToEnd(s.router, { target: { kind: 'scratch' }, bytesPerRun: 256 << 20 }, (e, id) => {
      if (!conflict) conflict = rejectsWith(s.router.call('bench.start', { target: { kind: 'scratch' } }), 'CONFLICT', /already running/);
      if (e.row && !cancelled) cancelled = s.router.call('bench.cancel', { benchId: id });
    });
    await conflict;
    assert.deepEqual(await cancelled, { ok: true });
    assert.equal(result.state, 'cancelled');
    assert.ok(result.rows.length >= 1 && result.rows.length < 32, `${result.rows.length} rows`);
    assert.ok(Date.now() - t0 < 60_000);
    // Cancelling a finished run is harmless; the next run starts.
    const again = await runToEnd(s.router, { target: { kind: 'scratch' }, variants: [{ aio: 'io_uring' }], workloads: [{ op: 'write', recordBytes: 65536 }], bytesPerRun: 1 << 20 });
    assert.equal(again.result.state, 'done');
    assert.equal(again.result.rows.length, 1);
  } finally {
    await s.cleanup();
  }
});

test('bad input: unknown runs, native with writeback, missing files, directories', async () => {
  const s = setup();
  try {
    await rejectsWith(s.router.call('bench.result', { benchId: 'nope' }), 'NOT_FOUND', /no comparison/);
    await rejectsWith(s.router.call('bench.cancel', { benchId: 'nope' }), 'NOT_FOUND', /no comparison/);
    assert.throws(() => s.router.subscribe('bench.progress', { benchId: 'nope' }, () => undefined), /no comparison/);
    await rejectsWith(s.router.call('bench.start', { target: { kind: 'scratch' }, cache: 'writeback' }), 'UNSUPPORTED_MODE', /native' needs cache 'none' or 'directsync'/);
    await rejectsWith(s.router.call('bench.start', { target: { kind: 'scratch' }, variants: [{ aio: 'threads', nowait: true }] }), 'INVALID_ARGUMENT', /nowait is a variant of aio 'native' only/);
    await rejectsWith(s.router.call('bench.start', { target: { kind: 'path', path: join(s.dir, 'missing.img') } }), 'NOT_FOUND', /no file or device/);
    mkdirSync(join(s.dir, 'sub'));
    await rejectsWith(s.router.call('bench.start', { target: { kind: 'path', path: join(s.dir, 'sub') } }), 'IS_DIRECTORY');
    await rejectsWith(s.router.call('bench.start', { target: { kind: 'vmDisk', vmId: 'ghost', diskId: 'd0' } }), 'NOT_FOUND');
    await rejectsWith(s.router.call('bench.start', { target: { kind: 'scratch' }, bytesPerRun: 5 }), 'INVALID_ARGUMENT', /bytesPerRun/);
  } finally {
    await s.cleanup();
  }
});

test("a running VM's disk is refused with the reason; once stopped it is measured and its data written back", async () => {
  const s = setup();
  const img = image(s.dir, 'vm.img', 64 << 20);
  // Recognisable data at the start, where the comparison writes.
  writeFileSync(img, Buffer.alloc(3 << 20, 0x5a), { flag: 'r+' });
  const sum = () => createHash('sha256').update(readFileSync(img)).digest('hex');
  const before = sum();
  try {
    const vm = (await s.router.call('vm.create', { name: 'busy', memoryMiB: 64, display: 'none', network: { user: false }, disks: [{ path: img }] })) as VmInfo;
    const started = (await s.router.call('vm.start', { id: vm.config.id })) as VmInfo;
    assert.equal(started.state, 'running');
    try {
      await rejectsWith(s.router.call('bench.start', { target: { kind: 'vmDisk', vmId: vm.config.id, diskId: 'd0' } }), 'DEVICE_BUSY', /'busy' is in use: the VM is running.*stop the VM first/);
      await rejectsWith(s.router.call('bench.start', { target: { kind: 'path', path: img } }), 'DEVICE_BUSY', /disk d0 of the VM 'busy', which is running/);
    } finally {
      await s.router.call('vm.forceOff', { id: vm.config.id });
    }
    const { result } = await runToEnd(s.router, {
      target: { kind: 'vmDisk', vmId: vm.config.id, diskId: 'd0' }, variants: [{ aio: 'native', nowait: true }, { aio: 'threads' }],
      workloads: [{ op: 'write', recordBytes: 16384 }, { op: 'read', recordBytes: 16384 }], bytesPerRun: 2 << 20,
    });
    assert.equal(result.state, 'done', result.error);
    assert.equal(result.rows.length, 4);
    assert.equal(result.settings?.preserved, true);
    assert.equal(sum(), before, 'the VM disk has its data back');
  } finally {
    await s.cleanup();
  }
});

test('closing the backend cancels a comparison in progress and stops its disk server', async () => {
  const s = setup();
  const { benchId } = (await s.router.call('bench.start', { target: { kind: 'scratch' }, bytesPerRun: 1 << 30 })) as { benchId: string };
  await within(
    new Promise<void>((resolve) => {
      const off = s.router.subscribe('bench.progress', { benchId }, (e) => { if ((e as Progress).step) { off(); resolve(); } });
    }),
    { timeoutMs: 120_000, what: 'the first step of the comparison' },
  );
  await s.cleanup(); // resolves only once the run has ended
  const result = (await s.router.call('bench.result', { benchId })) as BenchResult;
  assert.equal(result.state, 'cancelled');
  assert.ok(result.rows.length < 32);
});

test('busyReason names the path a comparison is writing to, and nothing else, until it ends', async () => {
  const s = setup();
  const layer = createBenchLayer(s.backend.manager, s.env);
  try {
    const img = image(s.dir, 'measured.img', 64 << 20);
    const id = await layer.start({ target: { kind: 'path', path: img }, modes: ['threads'], cache: 'none', bytesPerRun: 1 << 30 });
    assert.match(layer.busyReason(img) ?? '', /being measured by the aio comparison/);
    assert.equal(layer.busyReason(join(s.dir, 'other.img')), null);
    await layer.cancel(id);
    assert.equal(layer.busyReason(img), null);
    assert.equal((await layer.result(id)).state, 'cancelled');
  } finally {
    await layer.cancelAll();
    await s.cleanup();
  }
});

test('a VM cannot start or attach a disk while the comparison measures it', async () => {
  const s = setup();
  try {
    const img = image(s.dir, 'vm.img', 64 << 20);
    const vm = (await s.router.call('vm.create', { name: 'busy' })) as VmInfo;
    const { benchId } = (await s.router.call('bench.start', { target: { kind: 'path', path: img }, bytesPerRun: 64 << 20 })) as { benchId: string };
    try {
      await rejectsWith(s.router.call('disk.attach', { vmId: vm.config.id, disk: { path: img } }), 'DEVICE_BUSY', /being measured by the aio comparison/);
    } finally {
      await s.router.call('bench.cancel', { benchId });
    }
    // Once the comparison is over the same disk is accepted.
    await s.router.call('disk.attach', { vmId: vm.config.id, disk: { path: img } });
  } finally {
    await s.cleanup();
  }
});
