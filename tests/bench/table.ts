// The performance table of the README (issue 17): every row is one target and one aio/cache mode;
// Spindle (`spindle export`), qemu-storage-daemon and fio run on the same target in the same run,
// in alternating order, several rounds; the table shows medians, with the serving process's CPU
// per I/O and the driver's own CPU (when it nears 100% of a core, the driver set the pace).
// Targets: a written file on the machine's own disk (ext4, the tmpdir), the same on xfs (a loop
// device over a file on that disk, when mkfs.xfs is installed), sparse files on both (recreated
// before every run: the writes allocate), and a loop device over /dev/shm. Workloads: 4k random
// QD32 and 1M sequential QD4 (writes only on the sparse files, 4k only on /dev/shm). A second
// table is the submission-stall histogram: how long Spindle's io_submit / io_uring_enter took.
// It reports; it never asserts timings.
//
// usage: node dist/tests/bench/table.js [--quick] [--reps N] [--runtime S] [--only ROWS]
//        [--baseline DIR]   also run DIR/bin/spindle.js (another checkout: before/after in one run)
//        [--no-seq]         4k random only
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { AioMode, CacheMode, NowaitMode } from '../../electron/shared/modes.js';
import type { Workload } from '../../electron/tools/workload.js';
import { parseExportStats, qsdServer, spindleExportServer, type DiskServerFactory } from '../guest/disk-server.js';
import { makeFile, mountFs, tempDir, type MountedFs } from '../lib/loop.js';
import { fmt, machineInfo, markdownTable, median, saveResults, updateReadme } from './lib/report.js';
import { measure, requireSpindleCommands, shmLoopTarget, withServer, writtenAndSynced, type BenchTarget } from './lib/setup.js';

const MiB = 1 << 20;

interface Mode {
  aio: AioMode;
  cache: CacheMode;
  nowait?: NowaitMode;
  /** The fio ioengine that plays the same part (psync runs QD jobs of one request each). */
  fio: 'psync' | 'libaio' | 'io_uring';
}
interface Row {
  target: 'ext4' | 'xfs' | 'ext4-sparse' | 'xfs-sparse' | 'shm';
  mode: Mode;
}
const FILE_MODES: Mode[] = [
  { aio: 'threads', cache: 'writeback', fio: 'psync' },
  { aio: 'io_uring', cache: 'writeback', fio: 'io_uring' },
  { aio: 'native', cache: 'none', nowait: 'off', fio: 'libaio' },
  { aio: 'native', cache: 'none', nowait: 'on', fio: 'libaio' },
  { aio: 'io_uring', cache: 'none', fio: 'io_uring' },
];
const SHM_MODES: Mode[] = [
  { aio: 'threads', cache: 'none', fio: 'psync' },
  { aio: 'native', cache: 'none', nowait: 'off', fio: 'libaio' },
  { aio: 'io_uring', cache: 'none', fio: 'io_uring' },
];
// A sparse file: native with RWF_NOWAIT bounces every write into a hole; the allocation-aware mode
// (nowait auto on a file: the extent map) sends those to the pool, which allocates ahead.
// io_uring/writeback beside threads/writeback: the two candidates for the image-file default.
const SPARSE_MODES: Mode[] = [
  { aio: 'threads', cache: 'writeback', fio: 'psync' },
  { aio: 'io_uring', cache: 'writeback', fio: 'io_uring' },
  { aio: 'native', cache: 'none', nowait: 'on', fio: 'libaio' },
  { aio: 'native', cache: 'none', nowait: 'auto', fio: 'libaio' },
  { aio: 'io_uring', cache: 'none', fio: 'io_uring' },
];

const modeName = (m: Mode): string =>
  `${m.aio}/${m.cache}${m.aio === 'native' && m.nowait === 'on' ? '+nowait' : m.aio === 'native' && m.nowait === 'auto' ? '+allocation-aware' : ''}`;

type Side = 'spindle' | 'baseline' | 'qsd' | 'fio';
interface Sample {
  iops: number;
  p99Us: number;
  cpuUsPerIo: number;
  /** Spindle's sides: the driver's (loadgen's) CPU over the run, in % of one core. */
  driverCpuPct?: number;
  /** Spindle's sides, from its exit stats: submit calls and their duration histogram (log2 µs). */
  submitCalls?: number;
  submitHistogram?: number[];
  submitStallMaxUs?: number;
  fastPath?: unknown;
}

/** fio with the engine that plays the mode's part, on the same target, the same workload. */
function fio(path: string, size: number, m: Mode, w: Workload, runtimeSec: number, sparse: boolean): Sample {
  const direct = m.cache === 'none' || m.cache === 'directsync';
  const args = [
    '--name=table',
    `--filename=${path}`,
    `--ioengine=${m.fio}`,
    `--direct=${direct ? 1 : 0}`,
    `--rw=${w.rw}`,
    `--bs=${w.bs}`,
    `--size=${size}`,
    `--runtime=${runtimeSec}`,
    '--time_based',
    '--group_reporting',
    '--output-format=json',
  ];
  // On a sparse file the writes must allocate, as Spindle's do: no fallocate when fio opens it.
  if (sparse) args.push('--fallocate=none');
  if (m.fio === 'psync') args.push(`--numjobs=${w.iodepth}`, '--thread');
  else args.push(`--iodepth=${w.iodepth}`, `--iodepth_batch_complete_max=${w.iodepth}`);
  const out = JSON.parse(execFileSync('fio', args, { encoding: 'utf8', maxBuffer: 64 << 20 })) as {
    jobs: Record<string, unknown>[];
  };
  const job = out.jobs[0]! as { usr_cpu: number; sys_cpu: number; job_runtime: number } & Record<string, unknown>;
  const d = job[w.rw.endsWith('read') ? 'read' : 'write'] as {
    iops: number;
    total_ios: number;
    clat_ns?: { percentile?: Record<string, number> };
  };
  // usr/sys_cpu: percent of one CPU over the run time (group_reporting sums the jobs' CPU time).
  const cpuSec = ((job.usr_cpu + job.sys_cpu) / 100) * (job.job_runtime / 1000 || runtimeSec);
  return {
    iops: d.iops,
    p99Us: (d.clat_ns?.percentile?.['99.000000'] ?? 0) / 1000,
    cpuUsPerIo: d.total_ios ? (cpuSec * 1e6) / d.total_ios : NaN,
  };
}

function parseArgs(argv: string[]) {
  const val = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const flags = ['--quick', '--no-seq'];
  const known = new Set([...flags, '--reps', '--runtime', '--only', '--baseline']);
  for (let i = 0; i < argv.length; i++) {
    if (!known.has(argv[i]!)) throw new Error(`unknown argument ${argv[i]} (known: ${[...known].join(', ')})`);
    if (!flags.includes(argv[i]!)) i++;
  }
  const quick = argv.includes('--quick');
  const num = (flag: string, d: number): number => {
    const v = val(flag);
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} needs a positive number, got ${v}`);
    return n;
  };
  return {
    quick,
    reps: num('--reps', quick ? 1 : 3),
    runtimeSec: num('--runtime', quick ? 2 : 5),
    only: val('--only')?.split(','),
    baseline: val('--baseline'),
    seq: !argv.includes('--no-seq'),
  };
}

function makeTarget(kind: Row['target'], size: number, mounts: MountedFs[]): BenchTarget {
  if (kind === 'shm') return shmLoopTarget(size);
  if (kind === 'xfs' || kind === 'xfs-sparse') {
    const fs = mountFs('xfs', Math.ceil((size * 1.2) / MiB) + 64);
    mounts.push(fs);
    const path = join(fs.mountpoint, 'disk.img');
    if (kind === 'xfs-sparse') makeFile(path, size);
    else writtenAndSynced(path, size);
    return { name: kind, path, cleanup: () => undefined };
  }
  const dir = tempDir('spindle-table-');
  const path = join(dir.path, 'disk.img');
  if (kind === 'ext4-sparse') makeFile(path, size);
  else writtenAndSynced(path, size);
  return { name: kind, path, cleanup: dir.cleanup };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  requireSpindleCommands(['export', 'loadgen']);
  const size = args.quick ? 256 * MiB : 1024 * MiB;
  const hasXfs = spawnSync('mkfs.xfs', ['-V']).status === 0;
  const rows: Row[] = [
    ...FILE_MODES.map((mode) => ({ target: 'ext4' as const, mode })),
    ...(hasXfs ? FILE_MODES.map((mode) => ({ target: 'xfs' as const, mode })) : []),
    ...SPARSE_MODES.map((mode) => ({ target: 'ext4-sparse' as const, mode })),
    ...(hasXfs ? SPARSE_MODES.map((mode) => ({ target: 'xfs-sparse' as const, mode })) : []),
    ...SHM_MODES.map((mode) => ({ target: 'shm' as const, mode })),
  ].filter((r) => !args.only || args.only.some((o) => `${r.target} ${modeName(r.mode)}`.includes(o)));
  const allWorkloads: (Workload & { name: string })[] = [
    { name: '4k randread QD32', rw: 'randread', bs: 4096, iodepth: 32 },
    { name: '4k randwrite QD32', rw: 'randwrite', bs: 4096, iodepth: 32 },
    ...(args.seq
      ? [
          { name: '1M read QD4', rw: 'read' as const, bs: MiB, iodepth: 4 },
          { name: '1M write QD4', rw: 'write' as const, bs: MiB, iodepth: 4 },
        ]
      : []),
  ];
  // A sparse file's reads are reads of holes (zeros, no I/O): only its writes say anything.
  const workloadsOf = (kind: Row['target']) =>
    kind.endsWith('-sparse')
      ? allWorkloads.filter((w) => w.rw.endsWith('write'))
      : kind === 'shm'
        ? allWorkloads.filter((w) => w.bs === 4096)
        : allWorkloads;
  const started = Date.now();
  const sockets = tempDir('spindle-table-sock-');
  const results: { row: string; target: string; workload: string; bs: number; samples: Record<Side, Sample[]>; errors: string[] }[] = [];
  const mounts: MountedFs[] = [];
  try {
    for (const kind of [...new Set(rows.map((r) => r.target))]) {
      const target = makeTarget(kind, size, mounts);
      const workloads = workloadsOf(kind);
      const sparse = kind.endsWith('-sparse');
      try {
        for (const row of rows.filter((r) => r.target === kind)) {
          const m = row.mode;
          const cells = workloads.map((w) => ({
            row: `${kind}, ${modeName(m)}`,
            target: kind,
            workload: w.name,
            bs: w.bs,
            samples: { spindle: [], baseline: [], qsd: [], fio: [] } as Record<Side, Sample[]>,
            errors: [] as string[],
          }));
          results.push(...cells);
          // qemu-storage-daemon has no nowait or extent-map mode.
          const sides: Side[] = ['spindle', ...(args.baseline ? ['baseline' as const] : [])];
          if (!m.nowait || m.nowait === 'off') sides.push('qsd');
          sides.push('fio');
          for (let rep = 0; rep < args.reps; rep++) {
            const order = rep % 2 ? [...sides].reverse() : sides;
            for (const side of order) {
              for (const [i, w] of workloads.entries()) {
                const cell = cells[i]!;
                // Every run on the sparse target starts from an empty file (writes allocate it).
                if (sparse) makeFile(target.path, size);
                try {
                  if (side === 'fio') {
                    cell.samples.fio.push(fio(target.path, size, m, w, args.runtimeSec, sparse));
                    continue;
                  }
                  const socket = join(sockets.path, `${side}.sock`);
                  const factory: DiskServerFactory = side === 'qsd' ? qsdServer : spindleExportServer;
                  const opts = {
                    path: target.path,
                    socket,
                    aio: m.aio,
                    cache: m.cache,
                    queues: 1,
                    ...(side !== 'qsd' && m.nowait ? { nowait: m.nowait } : {}),
                  };
                  const bin = side === 'baseline' ? join(args.baseline!, 'bin', 'spindle.js') : undefined;
                  const { value, exitOutput } = await withServer(factory, bin ? { ...opts, bin } : opts, (server) =>
                    measure(server, { socket, rw: w.rw, bs: w.bs, iodepth: w.iodepth, queues: 1, runtimeSec: args.runtimeSec }),
                  );
                  const stats = side === 'spindle' ? parseExportStats(exitOutput) : null;
                  cell.samples[side].push({
                    iops: value.iops,
                    p99Us: value.p99Us,
                    cpuUsPerIo: value.cpuUsPerIo,
                    ...(side === 'qsd'
                      ? {}
                      : {
                          driverCpuPct: (value.driverCpuSec / args.runtimeSec) * 100,
                          submitCalls: stats?.submitCalls as number | undefined,
                          submitHistogram: stats?.submitHistogram as number[] | undefined,
                          submitStallMaxUs: stats?.submitStallMaxUs as number | undefined,
                          fastPath: stats?.fastPath,
                        }),
                  });
                } catch (err) {
                  cell.errors.push(`${side}: ${(err as Error).message.split('\n')[0]}`);
                }
                const s = cell.samples[side].at(-1);
                console.log(
                  `${cell.row} | ${w.name} | ${side}: ${s ? `${fmt(s.iops, 0)} IOPS, ${fmt(s.cpuUsPerIo)} µs CPU/IO, p99 ${fmt(s.p99Us, 0)} µs` : 'FAILED'}`,
                );
              }
            }
          }
        }
      } finally {
        target.cleanup();
      }
    }
  } finally {
    for (const m of mounts) m.cleanup();
    sockets.cleanup();
  }

  // 4k cells in IOPS, 1M cells in MB/s; in brackets the CPU per I/O.
  const cellText = (s: Sample[], bs: number): string => {
    if (!s.length) return '—';
    const iops = median(s.map((x) => x.iops));
    const rate = !Number.isFinite(iops) ? '–' : bs >= MiB ? `${fmt((iops * bs) / 1e6, 0)} MB/s` : `${fmt(iops / 1000, 1)}k`;
    return `${rate} (${fmt(median(s.map((x) => x.cpuUsPerIo)))} µs)`;
  };
  const driverText = (s: Sample[]): string => (s.length ? `${fmt(median(s.map((x) => x.driverCpuPct ?? NaN)), 0)}%` : '—');
  // The stall histogram: Spindle's submissions (every round of the cell pooled) by duration.
  const STALL_FROM_US = [128, 1024, 8192];
  const stallRows = results.flatMap((r) => {
    const s = r.samples.spindle.filter((x) => x.submitCalls);
    if (!s.length) return [];
    const calls = s.reduce((a, x) => a + x.submitCalls!, 0);
    const hist: number[] = [];
    for (const x of s) (x.submitHistogram ?? []).forEach((n, b) => (hist[b] = (hist[b] ?? 0) + n));
    // Bucket b holds [2^(b-1), 2^b) µs: at or above `us` are the buckets from log2(us) + 1.
    const atLeast = (us: number) => hist.slice(Math.log2(us) + 1).reduce((a, n) => a + (n ?? 0), 0);
    const share = (n: number) => (n ? `${n} (${fmt((n / calls) * 100, 2)}%)` : '0');
    return [
      [
        r.row,
        r.workload,
        String(calls),
        ...STALL_FROM_US.map((us) => share(atLeast(us))),
        fmt(Math.max(...s.map((x) => x.submitStallMaxUs ?? NaN)), 0),
      ],
    ];
  });
  const machine = machineInfo();
  const md = [
    `# Spindle vs qemu-storage-daemon vs fio (${new Date().toISOString().slice(0, 10)})`,
    '',
    `Driver: \`spindle loadgen\` (a vhost-user-blk frontend), 1 queue; medians of ${args.reps} alternating round(s) of ${args.runtimeSec} s; disk ${size / MiB} MiB${args.quick ? ' (--quick: a smoke run, not a measurement)' : ''}. 4k cells in IOPS, 1M cells in MB/s; in brackets the serving process's CPU per I/O (fio: its own). Driver CPU: loadgen's own CPU while it drove Spindle, in % of one core (near 100%: the driver set the pace, not the backend).`,
    `Machine: ${machine.cpus as number} × ${machine.cpu as string}, kernel ${machine.kernel as string}, load at start ${(machine.loadavgAtStart as number[]).map((x) => x.toFixed(2)).join(' ')}; ${machine.qemu as string}. Wall time ${Math.round((Date.now() - started) / 1000)} s.`,
    '',
    markdownTable(
      [
        'target, mode',
        'workload',
        'Spindle',
        ...(args.baseline ? ['Spindle baseline'] : []),
        'qemu-storage-daemon',
        'fio',
        'driver CPU',
        'errors',
      ],
      results.map((r) => [
        r.row,
        r.workload,
        cellText(r.samples.spindle, r.bs),
        ...(args.baseline ? [cellText(r.samples.baseline, r.bs)] : []),
        cellText(r.samples.qsd, r.bs),
        cellText(r.samples.fio, r.bs),
        driverText(r.samples.spindle),
        r.errors.join('; '),
      ]),
    ),
    '',
    "Submission stalls: how long Spindle's io_submit (native) or io_uring_enter (io_uring) took, every round of the cell pooled, at the counters' power-of-two resolution (the thread pool has no submit call).",
    '',
    markdownTable(['target, mode', 'workload', 'submits', ...STALL_FROM_US.map((us) => `≥ ${us} µs`), 'longest µs'], stallRows),
  ].join('\n');
  const files = saveResults('table', { machine, args, sizeBytes: size, results }, md);
  const written = files.filter((f) => !f.includes('-latest'));
  console.log(`\n${md}\n\nwritten: ${written.join(', ')}`);
  // A full run of every row is the README's table; a quick, partial or before/after run is not.
  if (
    !args.quick &&
    !args.only &&
    !args.baseline &&
    updateReadme(
      'table',
      md,
      written.find((f) => f.endsWith('.md'))!,
    )
  ) {
    console.log('README.md: the performance table updated');
  }
}

main().catch((err: unknown) => {
  console.error(`bench table: ${(err as Error).message}`);
  process.exit(1);
});
