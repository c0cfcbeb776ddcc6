// Where allocation really blocks: alloc-chunk's measurement (4k random writes QD32 through the
// engine, a fresh sparse image per run, the written image as the control) on a filesystem whose
// device is slow, as a busy or metered disk is. A file on /var/tmp (the machine's disk) → a loop
// device (direct I/O on its file) → ext4 (and xfs when mkfs.xfs exists); the loop device is
// throttled for a cgroup (cgroup v2 io.max, else cgroup v1 blkio.throttle) and the measuring runs
// happen in a child process started inside it, so the engine's threads are throttled too. For
// threads, native, native+nowait, allocation-aware native and io_uring: IOPS, p99, the longest
// io_submit and its p99, pool writes and misses. Reports; never asserts timings. Needs root.
//
// usage: node dist/tests/bench/alloc-throttled.js [--quick] [--reps N] [--runtime S]
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlockBackend, type BackendOptions } from '../../electron/dataplane/block/backend.js';
import { percentileUs } from '../../electron/dataplane/block/stats.js';
import { runWorkload } from '../../electron/tools/engine-workload.js';
import { blockDevNumber, createThrottleGroup, throttleMechanism, type IoLimit, type ThrottleGroup } from '../lib/io-throttle.js';
import { makeFile, mountFs } from '../lib/loop.js';
import { benchArgs, fmt, machineInfo, markdownTable, median, saveResults } from './lib/report.js';
import { writtenAndSynced } from './lib/setup.js';

const MiB = 1 << 20;
const CHILD_ENV = 'SPINDLE_ALLOC_THROTTLED_CHILD';

const VARIANTS: { name: string; options: BackendOptions }[] = [
  { name: 'threads/none', options: { aio: 'threads', cache: 'none' } },
  { name: 'native/none', options: { aio: 'native', cache: 'none', nowait: 'off' } },
  { name: 'native/none+nowait', options: { aio: 'native', cache: 'none', nowait: 'on' } },
  { name: 'native/none allocation-aware', options: { aio: 'native', cache: 'none', nowait: 'auto' } },
  { name: 'io_uring/none', options: { aio: 'io_uring', cache: 'none' } },
];
const LEVELS: { name: string; limit: IoLimit | null }[] = [
  { name: 'unthrottled', limit: null },
  { name: '2000 IOPS, 50 MB/s', limit: { iops: 2000, bytesPerSec: 50_000_000 } },
  { name: '500 IOPS, 20 MB/s', limit: { iops: 500, bytesPerSec: 20_000_000 } },
];
type FileKind = 'sparse' | 'written';

interface Sample {
  ios: number;
  iops: number;
  p99Us: number;
  stallMaxUs: number;
  stallP99Us: number;
  submitCalls: number;
  poolWrites: number;
  misses: number;
  /** Threads of the measuring process after the run, and those not in its cgroup. */
  threads: number;
  threadsOutside: number;
}
interface ChildPlan {
  dir: string;
  writtenImage: string;
  sizeBytes: number;
  runtimeSec: number;
  runs: { file: FileKind; variant: string }[];
}
type ChildResult = { file: FileKind; variant: string } & ({ sample: Sample } | { error: string });

/** The measuring side, in the throttled cgroup: one engine per run, results as `result {json}` lines. */
async function child(plan: ChildPlan): Promise<void> {
  const cgroupOf = (task: string): string =>
    readFileSync(`/proc/self/task/${task}/cgroup`, 'utf8')
      .split('\n')
      .filter((l) => /blkio|^0::/.test(l))
      .join(', ');
  const own = cgroupOf(String(process.pid));
  console.log(`cgroup ${JSON.stringify(own)}`);
  const sparse = join(plan.dir, 'sparse.img');
  for (const run of plan.runs) {
    const v = VARIANTS.find((x) => x.name === run.variant)!;
    const path = run.file === 'sparse' ? makeFile(sparse, plan.sizeBytes) : plan.writtenImage; // fresh and sparse for every run
    let result: ChildResult;
    try {
      const b = await BlockBackend.open(path, v.options);
      try {
        const r = await runWorkload(b, { name: '4k-randwrite-qd32', rw: 'randwrite', bs: 4096, iodepth: 32 }, plan.runtimeSec);
        const c = b.counters.snapshot(); // a fresh backend: its counters are this run's
        // The engine's threads (pool workers, io_uring workers) must be throttled too.
        const threadsOutside = readdirSync('/proc/self/task').filter((t) => cgroupOf(t) !== own).length;
        result = {
          ...run,
          sample: {
            ios: r.ios,
            iops: r.iops,
            p99Us: r.p99Us,
            stallMaxUs: c.submit.calls ? r.submitStallMaxUs : NaN,
            stallP99Us: c.submit.calls ? percentileUs(c.submit.histogram, 0.99) : NaN,
            submitCalls: c.submit.calls,
            poolWrites: c.allocation.poolWrites,
            misses: c.allocation.misses,
            threads: readdirSync('/proc/self/task').length,
            threadsOutside,
          },
        };
      } finally {
        await b.close();
      }
    } catch (err) {
      result = { ...run, error: (err as Error).message };
    } finally {
      if (run.file === 'sparse') rmSync(sparse, { force: true });
    }
    console.log(`result ${JSON.stringify(result)}`);
  }
}

/** Runs `plan` in a child process inside `group`; returns its results and the cgroup line it saw. */
function runChild(group: ThrottleGroup, plan: ChildPlan, label: string): Promise<{ results: ChildResult[]; cgroup: string }> {
  const [cmd, args] = group.spawnArgs(process.execPath, [fileURLToPath(import.meta.url)]);
  const p = spawn(cmd, args, { env: { ...process.env, [CHILD_ENV]: JSON.stringify(plan) }, stdio: ['ignore', 'pipe', 'inherit'] });
  const results: ChildResult[] = [];
  let cgroup = '?';
  let buffered = '';
  p.stdout.setEncoding('utf8');
  p.stdout.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.startsWith('cgroup ')) cgroup = JSON.parse(line.slice(7)) as string;
      else if (line.startsWith('result ')) {
        const r = JSON.parse(line.slice(7)) as ChildResult;
        results.push(r);
        console.log(
          `${label} | ${r.file} | ${r.variant}: ` +
            ('sample' in r
              ? `${fmt(r.sample.iops, 0)} IOPS, p99 ${fmt(r.sample.p99Us, 0)} µs, io_submit max ${fmt(r.sample.stallMaxUs, 0)} µs ` +
                `(p99 ${fmt(r.sample.stallP99Us, 0)}), pool writes ${r.sample.poolWrites}, misses ${r.sample.misses}`
              : `FAILED ${r.error}`),
        );
      } else if (line) console.log(line);
    }
  });
  return new Promise((resolve, reject) => {
    p.on('error', reject);
    p.on('close', (code, signal) =>
      code === 0 ? resolve({ results, cgroup }) : reject(new Error(`${label}: the measuring child exited with ${code ?? signal}`)),
    );
  });
}

async function main(): Promise<void> {
  const args = benchArgs(process.argv.slice(2), { reps: 3, runtimeSec: 5, quickRuntimeSec: 2 });
  if (process.getuid?.() !== 0) throw new Error('needs root (loop devices, mounts, cgroups)');
  const mechanism = throttleMechanism();
  if (mechanism !== 'cgroup v2 io.max' && mechanism !== 'cgroup v1 blkio.throttle') throw new Error(mechanism);
  const size = args.quick ? 512 * MiB : 2048 * MiB;
  const filesystems = (['ext4', 'xfs'] as const).filter((t) => spawnSync('which', [`mkfs.${t}`]).status === 0);
  const started = Date.now();
  const samples = new Map<string, Sample[]>();
  const errors = new Map<string, string[]>();
  const key = (fs: string, level: string, file: FileKind, variant: string): string => `${fs}|${level}|${file}|${variant}`;
  /** Per fs and level: I/Os the runs completed, and the writes the cgroup's throttle counted on the device. */
  const checks: {
    fs: string;
    level: string;
    limit: IoLimit | null;
    runIos: number;
    servicedWrites: number;
    settings: string;
    cgroup: string;
  }[] = [];
  const group = createThrottleGroup(`spindle-alloc-throttled-${process.pid}`);
  try {
    for (const fsType of filesystems) {
      // Room for the written image and a sparse one filling up.
      const fs = mountFs(fsType, Math.ceil((size * 2.5) / MiB), { base: '/var/tmp', loopDirectIo: true });
      try {
        const dev = blockDevNumber(fs.device.device);
        // Written outside the cgroup (buffered writeback is not throttled per cgroup in v1 anyway).
        const writtenImage = writtenAndSynced(join(fs.mountpoint, 'written.img'), size);
        for (let rep = 0; rep < args.reps; rep++) {
          const levels = rep % 2 ? [...LEVELS].reverse() : LEVELS;
          for (const [li, level] of levels.entries()) {
            // Alternating: variants forwards and backwards, sparse first and written first.
            const flip = (rep + li) % 2 === 1;
            const variants = flip ? [...VARIANTS].reverse() : VARIANTS;
            const files: FileKind[] = flip ? ['written', 'sparse'] : ['sparse', 'written'];
            const runs = files.flatMap((file) => variants.map((v) => ({ file, variant: v.name })));
            group.set(dev, level.limit);
            const before = group.serviced(dev);
            const label = `${fsType} ${dev} | ${level.name}`;
            const { results, cgroup } = await runChild(
              group,
              { dir: fs.mountpoint, writtenImage, sizeBytes: size, runtimeSec: args.runtimeSec, runs },
              label,
            );
            const after = group.serviced(dev);
            let runIos = 0;
            for (const r of results) {
              const k = key(fsType, level.name, r.file, r.variant);
              if ('sample' in r) {
                samples.set(k, [...(samples.get(k) ?? []), r.sample]);
                runIos += r.sample.ios;
              } else errors.set(k, [...(errors.get(k) ?? []), r.error]);
            }
            checks.push({
              fs: fsType,
              level: level.name,
              limit: level.limit,
              runIos,
              servicedWrites: after.writes - before.writes,
              settings: group.settings(),
              cgroup,
            });
            group.set(dev, null);
          }
        }
      } finally {
        fs.cleanup();
      }
    }
  } finally {
    group.remove();
  }

  const machine = machineInfo();
  const rows: (string | number)[][] = [];
  const summary: Record<string, unknown>[] = [];
  for (const fsType of filesystems)
    for (const file of ['sparse', 'written'] as const)
      for (const level of LEVELS)
        for (const v of VARIANTS) {
          const k = key(fsType, level.name, file, v.name);
          const ss = samples.get(k) ?? [];
          const m = (f: (x: Sample) => number): number => median(ss.map(f));
          const med = {
            iops: m((x) => x.iops),
            p99Us: m((x) => x.p99Us),
            stallMaxUs: m((x) => x.stallMaxUs),
            stallP99Us: m((x) => x.stallP99Us),
            poolWrites: m((x) => x.poolWrites),
            misses: m((x) => x.misses),
          };
          summary.push({
            fs: fsType,
            level: level.name,
            limit: level.limit,
            file,
            variant: v.name,
            median: med,
            samples: ss,
            errors: errors.get(k) ?? [],
          });
          rows.push([
            fsType,
            file,
            level.name,
            v.name,
            fmt(med.iops, 0),
            fmt(med.p99Us, 0),
            fmt(med.stallMaxUs, 0),
            fmt(med.stallP99Us, 0),
            fmt(med.poolWrites, 0),
            fmt(med.misses, 0),
            (errors.get(k) ?? []).join('; '),
          ]);
        }
  // Does the throttle bite? The written file's best IOPS against the limit, and the writes the
  // cgroup counted on the loop device against those the runs completed.
  const bite = filesystems.flatMap((fsType) =>
    LEVELS.map((level) => {
      const best = Math.max(
        ...VARIANTS.map((v) => median((samples.get(key(fsType, level.name, 'written', v.name)) ?? []).map((x) => x.iops))).filter(
          Number.isFinite,
        ),
      );
      const c = checks.filter((x) => x.fs === fsType && x.level === level.name);
      const runIos = c.reduce((a, x) => a + x.runIos, 0);
      const serviced = c.reduce((a, x) => a + x.servicedWrites, 0);
      const all = VARIANTS.flatMap((v) =>
        (['sparse', 'written'] as const).flatMap((file) => samples.get(key(fsType, level.name, file, v.name)) ?? []),
      );
      const outside = `${Math.max(0, ...all.map((x) => x.threadsOutside))} of ${Math.max(0, ...all.map((x) => x.threads))}`;
      return [fsType, level.name, level.limit ? String(level.limit.iops) : '–', fmt(best, 0), String(runIos), String(serviced), outside];
    }),
  );
  const cgroupSeen = [...new Set(checks.map((c) => c.cgroup))].join(' / ');
  const md = [
    '# Allocation under a throttled device: where io_submit really blocks',
    '',
    `4k random writes QD32 through the engine on a fresh sparse ${size / MiB} MiB image per run and on a written one (the control), on ${filesystems.join(' and ')} on a loop device (direct I/O) over a file in /var/tmp (the machine's disk), the loop device throttled for the measuring process by **${group.mechanism}** (read and write limits alike); medians of ${args.reps} alternating run(s) of ${args.runtimeSec} s${args.quick ? ' (--quick: a smoke run)' : ''}.`,
    `Machine: ${machine.cpus as number} × ${machine.cpu as string}, kernel ${machine.kernel as string}, load at start ${(machine.loadavgAtStart as number[]).map((x) => x.toFixed(2)).join(' ')}. Wall time ${Math.round((Date.now() - started) / 1000)} s.`,
    '',
    markdownTable(
      ['fs', 'file', 'throttle', 'mode', 'IOPS', 'p99 µs', 'longest io_submit µs', 'io_submit p99 µs', 'pool writes', 'misses', 'errors'],
      rows,
    ),
    '',
    "io_submit is io_uring_submit for io_uring; – for threads (no submit call). io_submit p99 is at the counters' power-of-two bucket resolution.",
    '',
    `Does the throttle bite? The written image's best IOPS against the limit, and the writes the cgroup's throttle counted on the loop device against the I/Os the runs completed (the measuring child's cgroup: ${cgroupSeen}):`,
    '',
    markdownTable(
      [
        'fs',
        'throttle',
        'IOPS limit',
        'written: best IOPS',
        'I/Os completed',
        'writes counted by the cgroup',
        'threads outside the cgroup (most)',
      ],
      bite,
    ),
  ].join('\n');
  const files = saveResults(
    'alloc-throttled',
    { machine, args, mechanism: group.mechanism, sizeBytes: size, levels: LEVELS, results: summary, checks },
    md,
  );
  console.log(`\n${md}\n\nwritten: ${files.filter((f) => !f.includes('-latest')).join(', ')}`);
}

const plan = process.env[CHILD_ENV];
(plan ? child(JSON.parse(plan) as ChildPlan) : main()).catch((err: unknown) => {
  console.error(`bench alloc-throttled: ${(err as Error).message}`);
  process.exit(1);
});
