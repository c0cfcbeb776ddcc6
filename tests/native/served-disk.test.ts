// ServedDisk: the VM manager's DiskHost over Spindle's real disk server (one worker_thread per
// disk, a real file), driven by `spindle loadgen` as the vhost-user frontend. Checks what the
// stats sampler and the UI get: rates from the engine's counters, the IOThread's CPU time found
// by its kernel tid, events as log lines, and a live aio switch.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { servedDiskFactory } from '../../electron/host/vm/served-disk.js';
import type { DiskHostEvent } from '../../electron/host/vm/disk-host.js';
import { StatsSampler } from '../../electron/host/stats/sampler.js';
import { IoUringWorkerCpu } from '../../electron/host/proc/thread-cpu.js';
import { runLoadgen, type LoadgenOptions } from '../../electron/tools/loadgen.js';
import { makeFile } from '../lib/loop.js';
import { waitFor } from '../lib/wait.js';

const load = (socket: string, o: Partial<LoadgenOptions> = {}): LoadgenOptions => ({
  socket, rw: 'randrw', bs: 4096, iodepth: 8, queues: 1, runtimeSec: 0.3, size: 0,
  verify: false, verifyOnly: false, rwmixread: 50, seed: 5, ...o,
});

test('a served disk: sampler rates and backend CPU from the real IOThread, live switch, events as lines', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-served-'));
  const path = makeFile(join(dir, 'd.img'), 16 << 20, { written: true });
  const disk = await servedDiskFactory({
    path, socketPath: join(dir, 'd.sock'), aio: 'threads', cache: 'none', nowait: 'off', readOnly: false, queues: 1, serial: 'sd',
  });
  const events: DiskHostEvent[] = [];
  disk.on('event', (e: DiskHostEvent) => events.push(e));
  let clock = 0;
  const sampler = new StatsSampler({ diskHosts: () => [{ vmId: null, diskId: 'd0', host: disk }], qemuProcesses: () => [] }, { now: () => clock });
  try {
    assert.ok(disk.server.threadTid !== null && disk.server.threadTid !== process.pid, 'the IOThread reported its own kernel tid');
    await sampler.sample();
    const r = await runLoadgen(load(disk.server.spec.socketPath));
    assert.equal(r.errors, 0);
    clock += 500;
    const s = (await sampler.sample())!.disks[0]!;
    assert.ok(s.readIops > 0 && s.writeIops > 0 && s.readMBps > 0 && s.writeMBps > 0, JSON.stringify(s));
    assert.ok(s.latencyP50Us > 0 && s.latencyP99Us >= s.latencyP50Us);
    assert.ok(s.backendCpuSec > 0 && s.backendCpuPct > 0, 'the IOThread and pool workers spent CPU');
    assert.equal(s.nowaitFallbacksPerSec, 0);
    assert.ok(s.submitStallMaxUs !== undefined && s.submitStallMaxUs >= 0);

    const before = disk.stats().cpuSec!;
    await disk.reconfigure({ aio: 'io_uring' });
    const r2 = await runLoadgen(load(disk.server.spec.socketPath, { seed: 6 }));
    assert.equal(r2.errors, 0);
    await disk.reconfigure({ aio: 'native' });
    const after = disk.stats().cpuSec!;
    assert.ok(after > before, `backend CPU keeps growing across engine switches (${before} -> ${after})`);
    assert.ok(events.some((e) => e.kind === 'modes' && e.aio === 'io_uring' && e.cache === 'none'), JSON.stringify(events));
    assert.ok(events.some((e) => e.kind === 'connected' || e.kind === 'disconnected'));
    await assert.rejects(disk.reconfigure({ cache: 'writeback' }), /needs cache 'none' or 'directsync'|native/);
  } finally {
    await disk.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('io_uring workers the kernel starts for a disk\'s IOThread (iou-wrk-<tid>) count in its backend CPU', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-served-'));
  const path = makeFile(join(dir, 'u.img'), 16 << 20, { written: true });
  // Buffered writes through io_uring that would block are punted to io-wq workers (seen on this
  // machine's /tmp; a filesystem that never blocks them would start none and fail this test).
  const disk = await servedDiskFactory({
    path, socketPath: join(dir, 'u.sock'), aio: 'io_uring', cache: 'writeback', nowait: 'off', readOnly: false, queues: 1, serial: 'su',
  });
  try {
    const uring = new IoUringWorkerCpu(disk.server.threadTid!);
    const seen = new Set<string>();
    const poll = setInterval(() => {
      for (const t of readdirSync('/proc/self/task')) {
        try {
          const comm = readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim();
          if (comm.startsWith('iou-wrk-')) seen.add(comm);
          uring.seconds();
        } catch { /* thread exited */ }
      }
    }, 5);
    // io-wq workers are short-lived: keep the load going until the poll has caught them at work
    // (a loaded machine may need more than one run), with a deadline.
    try {
      await waitFor(
        async () => {
          const r = await runLoadgen(load(disk.server.spec.socketPath, { rw: 'randwrite', iodepth: 32, runtimeSec: 0.5 }));
          assert.equal(r.errors, 0);
          return seen.size > 0 && uring.seconds() > 0;
        },
        { timeoutMs: 120_000, what: 'an iou-wrk worker of the IOThread to be seen using CPU', detail: () => `seen: ${[...seen].join(', ') || 'none'}` },
      );
    } finally {
      clearInterval(poll);
    }
    assert.deepEqual([...seen], [`iou-wrk-${disk.server.threadTid}`], 'the workers are named after the IOThread');
    assert.ok(uring.seconds() > 0, 'their CPU is counted (and kept after they exit)');
  } finally {
    await disk.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
