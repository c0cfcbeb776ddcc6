// StatsSampler: cadence, retention, rates and percentiles from cumulative counters, QEMU CPU from
// /proc/PID/stat. Disk counters come from a scripted DiskHost (a test double: Spindle's own disk
// server is not merged yet, and the arithmetic is the subject here); the clock is driven by the
// test; the CPU figures come from real child processes.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HISTORY_MS, SAMPLE_INTERVAL_MS, StatsSampler, percentileFromLog2, type SampleSource } from '../../electron/host/stats/sampler.js';
import { processCpuSeconds } from '../../electron/host/proc/thread-cpu.js';
import type { DiskCountersSnapshot, DiskHost } from '../../electron/host/vm/disk-host.js';
import type { StatsTick } from '../../electron/shared/api.js';

const zero = (): DiskCountersSnapshot => ({
  readOps: 0,
  writeOps: 0,
  readBytes: 0,
  writeBytes: 0,
  inFlight: 0,
  cpuSec: 0,
  latencyLog2Us: new Array(20).fill(0),
});

class ScriptedDisk extends EventEmitter implements DiskHost {
  counters = zero();
  pending: Promise<DiskCountersSnapshot> | null = null;
  async reconfigure(): Promise<void> {}
  stats(): DiskCountersSnapshot | Promise<DiskCountersSnapshot> {
    return this.pending ?? { ...this.counters, latencyLog2Us: [...(this.counters.latencyLog2Us as number[])] };
  }
  async stop(): Promise<void> {}
}

function rig() {
  let clock = 1_000_000;
  const disks = new Map<string, { vmId: string | null; diskId: string; host: DiskHost }>();
  const qemus = new Map<string, number>();
  const source: SampleSource = {
    diskHosts: () => disks.values(),
    qemuProcesses: () => [...qemus].map(([vmId, pid]) => ({ vmId, pid })),
  };
  const sampler = new StatsSampler(source, { now: () => clock });
  return {
    sampler,
    disks,
    qemus,
    advance: (ms: number) => (clock += ms),
    now: () => clock,
    add(vmId: string | null, diskId: string, host = new ScriptedDisk()) {
      disks.set(`${vmId}/${diskId}`, { vmId, diskId, host });
      return host;
    },
  };
}

test('rates, latency percentiles, queue depth and backend CPU come from differences of cumulative counters', async () => {
  const r = rig();
  const d = r.add('vm1', 'd0');
  d.counters = { ...zero(), readOps: 1000, readBytes: 1000 * 4096, writeOps: 10, writeBytes: 10 * 65536, cpuSec: 3 };
  (d.counters.latencyLog2Us as number[])[5] = 7777; // history before the first sample must not count
  const first = (await r.sampler.sample())!;
  assert.deepEqual(first.disks, [], 'no rate without a previous sample');

  r.advance(500);
  const lat = [...(d.counters.latencyLog2Us as number[])];
  lat[4] += 98; // 98 completions in [8, 16) µs (bucket b counts [2^(b-1), 2^b))
  lat[11] += 2; // 2 in [1024, 2048) µs
  d.counters = {
    readOps: 1100,
    readBytes: 1000 * 4096 + 100 * 4096,
    writeOps: 60,
    writeBytes: 60 * 65536,
    inFlight: 7,
    cpuSec: 3.1,
    latencyLog2Us: lat,
  };
  const tick = (await r.sampler.sample())!;
  assert.equal(tick.intervalMs, SAMPLE_INTERVAL_MS);
  assert.equal(tick.t, r.now());
  assert.equal(tick.disks.length, 1);
  const s = tick.disks[0]!;
  assert.equal(s.vmId, 'vm1');
  assert.equal(s.diskId, 'd0');
  assert.equal(s.readIops, 200); // 100 ops in 0.5 s
  assert.equal(s.writeIops, 100);
  assert.equal(s.readMBps, (100 * 4096) / 0.5 / 1e6);
  assert.equal(s.writeMBps, (50 * 65536) / 0.5 / 1e6);
  assert.equal(s.latencyP50Us, 16);
  assert.equal(s.latencyP99Us, 2048);
  assert.equal(s.queueDepth, 7);
  assert.ok(Math.abs(s.backendCpuPct - 20) < 1e-9, `0.1 s CPU in 0.5 s is 20%, got ${s.backendCpuPct}`);
  assert.equal(s.backendCpuSec, 3.1);

  // An idle interval: zero rates, zero latency.
  r.advance(500);
  d.counters = { ...d.counters, inFlight: 0 };
  const idle = (await r.sampler.sample())!.disks[0]!;
  assert.deepEqual(
    [idle.readIops, idle.writeIops, idle.readMBps, idle.latencyP50Us, idle.latencyP99Us, idle.backendCpuPct],
    [0, 0, 0, 0, 0, 0],
  );
});

test('a restarted disk server (new host, counters from zero) gives no rate for one sample; a stopped disk drops out', async () => {
  const r = rig();
  const a = r.add('vm1', 'd0');
  a.counters = { ...zero(), readOps: 5000 };
  await r.sampler.sample();
  r.advance(500);
  const b = r.add('vm1', 'd0'); // same id, new server: its counters start again
  b.counters = { ...zero(), readOps: 10 };
  assert.deepEqual((await r.sampler.sample())!.disks, [], 'no negative or bogus rate across a restart');
  r.advance(500);
  b.counters = { ...zero(), readOps: 60 };
  assert.equal((await r.sampler.sample())!.disks[0]!.readIops, 100);
  r.disks.clear();
  r.advance(500);
  assert.deepEqual((await r.sampler.sample())!.disks, []);
  // A disk whose stats() fails (stopping) is skipped, the others still reported.
  const ok = r.add(null, 'scratch');
  const failing = r.add('vm2', 'd1');
  failing.pending = Promise.reject(new Error('stopping'));
  failing.pending.catch(() => undefined);
  await r.sampler.sample();
  r.advance(500);
  ok.counters = { ...zero(), writeOps: 5 };
  const tick = (await r.sampler.sample())!;
  assert.deepEqual(
    tick.disks.map((d) => [d.vmId, d.diskId, d.writeIops]),
    [[null, 'scratch', 10]],
  );
});

test('a sample still waiting on a slow disk makes the next one skip instead of piling up', async () => {
  const r = rig();
  const d = r.add('vm1', 'd0');
  let release!: (c: DiskCountersSnapshot) => void;
  d.pending = new Promise((res) => (release = res));
  const slow = r.sampler.sample();
  assert.equal(await r.sampler.sample(), null);
  release(zero());
  assert.ok(await slow);
  d.pending = null;
  assert.ok(await r.sampler.sample());
});

test('10 minutes of ticks are kept, older ones dropped; history(sinceMs) filters', async () => {
  const r = rig();
  r.add('vm1', 'd0');
  const start = r.now();
  const total = HISTORY_MS / SAMPLE_INTERVAL_MS + 40; // 20 s more than the window
  for (let i = 0; i < total; i++) {
    await r.sampler.sample();
    r.advance(SAMPLE_INTERVAL_MS);
  }
  const all = r.sampler.history();
  const last = all.at(-1)!.t;
  assert.equal(last, start + (total - 1) * SAMPLE_INTERVAL_MS);
  assert.equal(all[0]!.t, last - HISTORY_MS, 'the oldest kept tick is exactly 10 minutes old');
  assert.equal(all.length, HISTORY_MS / SAMPLE_INTERVAL_MS + 1);
  assert.ok(all.every((t, i) => i === 0 || t.t - all[i - 1]!.t === SAMPLE_INTERVAL_MS));
  const recent = r.sampler.history(last - 2000);
  assert.deepEqual(
    recent.map((t) => t.t),
    [last - 1500, last - 1000, last - 500, last],
  );
  assert.deepEqual(r.sampler.history(last), []);
});

test('start() samples every 500 ms and emits each tick; stop() ends it', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const r = rig();
  r.add('vm1', 'd0');
  const ticks: StatsTick[] = [];
  r.sampler.on('tick', (e: StatsTick) => ticks.push(e));
  const flush = () => new Promise((res) => setImmediate(res));
  r.sampler.start();
  r.sampler.start(); // idempotent: still one timer
  t.mock.timers.tick(499);
  await flush();
  assert.equal(ticks.length, 0);
  t.mock.timers.tick(1);
  await flush();
  assert.equal(ticks.length, 1);
  for (let i = 0; i < 4; i++) {
    t.mock.timers.tick(500);
    await flush();
  }
  assert.equal(ticks.length, 5);
  r.sampler.stop();
  t.mock.timers.tick(5000);
  await flush();
  assert.equal(ticks.length, 5);
  assert.equal(r.sampler.history().length, 5);
});

/** A real process that spins on the CPU; its name may be chosen (through a symlink to node). */
function spinner(name?: string): { pid: number; kill(): Promise<void>; dir: string | null } {
  let exe = process.execPath;
  let dir: string | null = null;
  if (name) {
    dir = mkdtempSync(join(tmpdir(), 'spindle-spin-'));
    exe = join(dir, name);
    symlinkSync(process.execPath, exe);
  }
  const child = spawn(exe, ['-e', 'for(;;){}'], { stdio: 'ignore' });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  return {
    pid: child.pid!,
    dir,
    kill: async () => {
      child.kill('SIGKILL');
      await exited; // reaped: no zombie left in /proc
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitForCpu(pid: number, atLeast: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const s = processCpuSeconds(pid);
    if (s !== null && s >= atLeast) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`process ${pid} never used ${atLeast} s of CPU`);
}

test('QEMU CPU: cumulative seconds and percent from /proc/PID/stat of a real process; gone processes drop out', async () => {
  const r = rig();
  const p = spinner();
  try {
    await waitForCpu(p.pid, 0.02);
    r.qemus.set('vm1', p.pid);
    const first = (await r.sampler.sample())!;
    assert.equal(first.vms.length, 1);
    assert.equal(first.vms[0]!.qemuCpuPct, 0, 'no rate without a previous sample');
    const sec0 = first.vms[0]!.qemuCpuSec;
    assert.ok(sec0 >= 0.02);
    await waitForCpu(p.pid, sec0 + 0.05);
    r.advance(1000);
    const second = (await r.sampler.sample())!.vms[0]!;
    assert.ok(second.qemuCpuSec >= sec0 + 0.05);
    // Percent of one core over the (driven) 1 s interval.
    assert.ok(Math.abs(second.qemuCpuPct - (second.qemuCpuSec - sec0) * 100) < 1e-9, JSON.stringify(second));
  } finally {
    await p.kill();
  }
  r.advance(500);
  assert.deepEqual((await r.sampler.sample())!.vms, [], 'an exited process is not reported');
});

test('processCpuSeconds parses after the last parenthesis (process names with spaces and parens) and is null for no process', async () => {
  const p = spinner('qemu) (x y');
  try {
    await waitForCpu(p.pid, 0.02);
    const sec = processCpuSeconds(p.pid)!;
    assert.ok(sec >= 0.02 && sec < 600, `${sec}`);
  } finally {
    await p.kill();
  }
  assert.equal(processCpuSeconds(2 ** 22 + 12345), null);
});

test('percentileFromLog2: bucket upper bounds over the interval; empty intervals are 0', () => {
  assert.equal(percentileFromLog2(undefined, undefined, 0.5), 0);
  assert.equal(percentileFromLog2([1, 1], [1, 1], 0.99), 0);
  assert.equal(percentileFromLog2(undefined, [0, 10], 0.5), 2);
  assert.equal(percentileFromLog2([5, 0, 0], [105, 0, 1], 0.5), 1);
  assert.equal(percentileFromLog2([5, 0, 0], [105, 0, 1], 0.999), 4);
  // Counters that went backwards (a reset) never make negative counts.
  assert.equal(percentileFromLog2([100, 1], [0, 5], 0.5), 2);
});

test('nowait fallbacks per second and the longest submit call within each interval', async () => {
  const r = rig();
  const d = r.add('vm1', 'd0');
  const stalls = new Array(32).fill(0);
  stalls[3] = 50;
  d.counters = { ...zero(), nowaitFallbacks: 10, submitStallLog2Us: [...stalls], submitStallMaxUs: 900 };
  await r.sampler.sample();
  // The running maximum grew: that is the interval's maximum, exactly.
  r.advance(500);
  stalls[12] += 1;
  d.counters = { ...d.counters, nowaitFallbacks: 60, submitStallLog2Us: [...stalls], submitStallMaxUs: 3000 };
  let s = (await r.sampler.sample())!.disks[0]!;
  assert.equal(s.nowaitFallbacksPerSec, 100);
  assert.equal(s.submitStallMaxUs, 3000);
  // It did not grow: the highest bucket that grew bounds the interval's maximum (16 µs here).
  r.advance(500);
  stalls[4] += 5;
  d.counters = { ...d.counters, submitStallLog2Us: [...stalls] };
  s = (await r.sampler.sample())!.disks[0]!;
  assert.equal(s.nowaitFallbacksPerSec, 0);
  assert.equal(s.submitStallMaxUs, 16);
  // No submit call at all in the interval.
  r.advance(500);
  s = (await r.sampler.sample())!.disks[0]!;
  assert.equal(s.submitStallMaxUs, 0);
});

test('a disk host without nowait or submit counters leaves those sample fields out', async () => {
  const r = rig();
  r.add('vm1', 'd0');
  await r.sampler.sample();
  r.advance(500);
  const s = (await r.sampler.sample())!.disks[0]!;
  assert.equal('nowaitFallbacksPerSec' in s, false);
  assert.equal('submitStallMaxUs' in s, false);
});
