// `npm run soak`: N disks (DiskServers, one IOThread each) across several synthetic
// guests (separate processes, like QEMUs) at full load for a while. Throughout: RSS and open fds
// of Spindle's process sampled every few seconds, every guest round's errors and verify
// mismatches, disk failure/broken events, and the API answering (a router call every 100 ms,
// latency percentiles). Prints a report and writes bench/results/soak-<time>.json. Not in CI.
// usage: node dist/tests/soak/soak.js [--duration 600] [--disks 8] [--guests 4] [--sample 5]
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createBackend } from '../../electron/api/backend.js';
import { DiskServer, type DiskSpec } from '../../electron/host/disks/disk-server.js';
import { DiskFaultWatch } from '../../electron/host/disks/fault-watch.js';
import { makeFile } from '../lib/loop.js';
import { isolatedEnv } from '../lib/api.js';

const { values: v } = parseArgs({
  options: {
    duration: { type: 'string', default: '600' },
    disks: { type: 'string', default: '8' },
    guests: { type: 'string', default: '4' },
    sample: { type: 'string', default: '5' },
    'disk-mib': { type: 'string', default: '64' },
  },
});
const durationSec = Number(v.duration);
const diskCount = Number(v.disks);
const guestCount = Math.min(Number(v.guests), diskCount);
const sampleSec = Number(v.sample);
const diskMiB = Number(v['disk-mib']);
for (const [k, x] of Object.entries({
  duration: durationSec,
  disks: diskCount,
  guests: guestCount,
  sample: sampleSec,
  'disk-mib': diskMiB,
})) {
  if (!(x > 0)) {
    console.error(`soak: --${k} must be a positive number.`);
    process.exit(2);
  }
}

// Modes cycle so every engine is under load; native needs O_DIRECT (cache none).
const MODES: Pick<DiskSpec, 'aio' | 'cache'>[] = [
  { aio: 'threads', cache: 'writeback' },
  { aio: 'io_uring', cache: 'none' },
  { aio: 'native', cache: 'none' },
  { aio: 'threads', cache: 'none' },
];
const ROOT = resolve(import.meta.dirname, '../../..');
const fdCount = () => readdirSync('/proc/self/fd').length;
const pct = (xs: number[], q: number) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};
const round1 = (x: number) => Math.round(x * 10) / 10;
/** Least-squares slope of y over x (per unit of x). */
function slope(pts: [number, number][]): number {
  if (pts.length < 2) return 0;
  const n = pts.length;
  const mx = pts.reduce((a, p) => a + p[0], 0) / n;
  const my = pts.reduce((a, p) => a + p[1], 0) / n;
  const num = pts.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0);
  const den = pts.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
  return den ? num / den : 0;
}

const dir = mkdtempSync(join(tmpdir(), 'spindle-soak-'));
const env = isolatedEnv(dir);
const backend = createBackend({ env });
const servers: DiskServer[] = [];
const events: { at: number; disk: number; kind: string; text: string }[] = [];
let t0 = Date.now();
const sec = () => round1((Date.now() - t0) / 1000);

try {
  for (let i = 0; i < diskCount; i++) {
    const path = makeFile(join(dir, `disk${i}.img`), diskMiB << 20, { written: true });
    const s: DiskSpec = {
      path,
      socketPath: join(dir, 'sockets', `d${i}.sock`),
      nowait: 'off',
      readOnly: false,
      queues: 1,
      serial: `soak${i}`,
      ...MODES[i % MODES.length]!,
    };
    const ds = await DiskServer.start(s);
    ds.on('event', (e) => {
      if (e.kind === 'failed' || e.kind === 'broken')
        events.push({ at: sec(), disk: i, kind: e.kind, text: 'reason' in e ? e.reason : '' });
    });
    new DiskFaultWatch(ds, 5000).start().on('fault', (f) => events.push({ at: sec(), disk: i, kind: f.kind, text: f.reason }));
    servers.push(ds);
  }
  console.log(
    `soak: ${diskCount} disks (${servers.map((d) => `${d.currentModes.aio}/${d.currentModes.cache}`).join(', ')}), ${guestCount} guests, ${durationSec} s`,
  );

  t0 = Date.now();
  const deadline = t0 + durationSec * 1000;
  const rounds: Record<string, unknown>[] = [];
  const guests = Array.from({ length: guestCount }, (_, g) => {
    const sockets = servers.filter((_, i) => i % guestCount === g).map((d) => d.spec.socketPath);
    const child = spawn(process.execPath, [join(ROOT, 'dist/tests/soak/guest.js'), String(deadline), ...sockets], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buf = '';
    child.stdout!.on('data', (d) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          rounds.push({ guest: g, ...JSON.parse(line) });
        } catch {
          /* not a result line */
        }
      }
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    return new Promise<{ code: number | null; stderr: string }>((ok) => child.on('exit', (code) => ok({ code, stderr })));
  });

  // The API answering throughout: a router call every 100 ms, alternating list and stats history.
  const apiMs: number[] = [];
  const apiErrors: string[] = [];
  let apiTick = 0;
  const api = setInterval(() => {
    const started = performance.now();
    const call = apiTick++ % 2 ? backend.router.call('vm.list', {}) : backend.router.call('stats.history', { sinceMs: Date.now() - 1000 });
    call.then(
      () => apiMs.push(performance.now() - started),
      (e) => apiErrors.push(String((e as Error).message)),
    );
  }, 100);

  const samples: { t: number; rssMiB: number; heapMiB: number; fds: number; apiP99Ms: number; iops: number }[] = [];
  let lastOps = 0;
  let lastApi = 0;
  const opsNow = () =>
    servers.reduce((a, d) => {
      const s = d.stats();
      return a + s.read.ops + s.write.ops + s.flush.ops;
    }, 0);
  const takeSample = (): void => {
    const m = process.memoryUsage();
    const ops = opsNow();
    const win = apiMs.slice(lastApi);
    lastApi = apiMs.length;
    samples.push({
      t: sec(),
      rssMiB: round1(m.rss / 2 ** 20),
      heapMiB: round1(m.heapUsed / 2 ** 20),
      fds: fdCount(),
      apiP99Ms: round1(pct(win, 0.99)),
      iops: Math.round((ops - lastOps) / sampleSec),
    });
    lastOps = ops;
    const s = samples.at(-1)!;
    console.log(`  t=${String(s.t).padStart(5)} s  rss ${s.rssMiB} MiB  fds ${s.fds}  api p99 ${s.apiP99Ms} ms  ${s.iops} IOPS`);
  };
  takeSample(); // baseline: disks up, guests starting
  const sample = setInterval(takeSample, sampleSec * 1000);

  const exits = await Promise.all(guests);
  clearInterval(api);
  clearInterval(sample);

  const warm = samples.filter((s) => s.t >= Math.min(30, durationSec / 4));
  const ioErrors = rounds.reduce((a, r) => a + ((r.errors as number) ?? 0), 0);
  const mismatches = rounds.reduce((a, r) => a + ((r.mismatches as number) ?? 0), 0);
  const failedRounds = rounds.filter((r) => r.failed);
  const report = {
    at: new Date(t0).toISOString(),
    durationSec,
    disks: diskCount,
    guests: guestCount,
    diskMiB,
    modes: servers.map((d) => d.currentModes),
    ios: rounds.reduce((a, r) => a + ((r.ios as number) ?? 0), 0),
    rounds: rounds.length,
    verifyRounds: rounds.filter((r) => r.verify).length,
    ioErrors,
    mismatches,
    failedRounds: failedRounds.map((r) => r.failed),
    guestExits: exits.map((e) => e.code),
    guestStderr: exits.map((e) => e.stderr.slice(-500)).filter(Boolean),
    diskEvents: events,
    rss: {
      firstMiB: samples[0]?.rssMiB,
      lastMiB: samples.at(-1)?.rssMiB,
      maxMiB: Math.max(...samples.map((s) => s.rssMiB)),
      slopeMiBPerMin: round1(slope(warm.map((s) => [s.t / 60, s.rssMiB]))),
    },
    // The baseline is before the guests connect (each connection adds its socket, eventfds, memfd).
    fds: {
      baseline: samples[0]?.fds,
      loadedFirst: samples[1]?.fds,
      last: samples.at(-1)?.fds,
      loadedMin: Math.min(...samples.slice(1).map((s) => s.fds)),
      loadedMax: Math.max(...samples.slice(1).map((s) => s.fds)),
    },
    api: {
      calls: apiMs.length,
      errors: apiErrors.length,
      p50Ms: round1(pct(apiMs, 0.5)),
      p99Ms: round1(pct(apiMs, 0.99)),
      maxMs: round1(Math.max(0, ...apiMs)),
      worstWindowP99Ms: Math.max(0, ...samples.map((s) => s.apiP99Ms)),
    },
    samples,
  };
  const ok =
    ioErrors === 0 &&
    mismatches === 0 &&
    failedRounds.length === 0 &&
    events.length === 0 &&
    apiErrors.length === 0 &&
    exits.every((e) => e.code === 0);
  console.log(
    `\nsoak ${ok ? 'OK' : 'PROBLEMS'}: ${report.ios} I/Os in ${report.rounds} rounds (${report.verifyRounds} verified), ${ioErrors} I/O errors, ${mismatches} verify mismatches, ${failedRounds.length} failed rounds, ${events.length} disk events`,
  );
  console.log(
    `  RSS ${report.rss.firstMiB} -> ${report.rss.lastMiB} MiB (max ${report.rss.maxMiB}, slope after warm-up ${report.rss.slopeMiBPerMin} MiB/min); fds ${report.fds.baseline} before the guests, ${report.fds.loadedFirst} -> ${report.fds.last} under load (min ${report.fds.loadedMin}, max ${report.fds.loadedMax})`,
  );
  console.log(
    `  API: ${report.api.calls} calls, ${report.api.errors} errors, p50 ${report.api.p50Ms} ms, p99 ${report.api.p99Ms} ms, max ${report.api.maxMs} ms, worst ${sampleSec}-s window p99 ${report.api.worstWindowP99Ms} ms`,
  );
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  const out = join(ROOT, 'bench/results', `soak-${report.at.replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
  console.log(`  report: ${out}`);
  process.exitCode = ok ? 0 : 1;
} finally {
  for (const s of servers) await s.stop().catch(() => undefined);
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
}
