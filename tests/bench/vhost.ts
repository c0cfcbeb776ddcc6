// `spindle loadgen` against `spindle export` and against qemu-storage-daemon serving
// the same device or file with the same aio and cache settings, in the same run.
// Reports IOPS, MB/s, p99 and backend CPU seconds per GiB as ratios Spindle ÷ qsd (medians of
// several short runs). It reports; it never asserts timings.
//
// usage: node dist/tests/bench/vhost.js [--quick] [--reps N] [--runtime S] [--only spindle|qsd]
import { join } from 'node:path';
import type { AioMode } from '../../electron/shared/modes.js';
import { qsdServer, spindleExportServer, type DiskServerFactory } from '../guest/disk-server.js';
import { tempDir } from '../lib/loop.js';
import type { Workload as ToolWorkload } from '../../electron/tools/workload.js';
import { benchArgs, fmt, machineInfo, markdownTable, median, ratio, saveResults } from './lib/report.js';
import {
  measure,
  requireSpindleCommands,
  shmLoopTarget,
  withServer,
  writtenFileTarget,
  type BenchTarget,
  type Sample,
} from './lib/setup.js';

const MiB = 1 << 20;

interface Workload extends ToolWorkload {
  name: string;
  queues: number;
}
const WORKLOADS: Workload[] = [
  { name: '4k randread QD32, 1 queue', rw: 'randread', bs: 4096, iodepth: 32, queues: 1 },
  { name: '4k randread QD32, 2 queues', rw: 'randread', bs: 4096, iodepth: 32, queues: 2 },
  { name: '4k randwrite QD32', rw: 'randwrite', bs: 4096, iodepth: 32, queues: 1 },
  { name: '1M seq write QD4', rw: 'write', bs: MiB, iodepth: 4, queues: 1 },
];
const AIO_MODES: AioMode[] = ['threads', 'native', 'io_uring'];
/** O_DIRECT everywhere: native needs it, and it keeps the host page cache out of the comparison. */
const CACHE = 'none' as const;
const SERVERS: Record<'spindle' | 'qsd', DiskServerFactory> = { spindle: spindleExportServer, qsd: qsdServer };

interface Cell {
  target: string;
  aio: AioMode;
  workload: string;
  samples: Record<'spindle' | 'qsd', Sample[]>;
  errors: string[];
}

const summarise = (samples: Sample[]) => ({
  iops: median(samples.map((s) => s.iops)),
  mbPerSec: median(samples.map((s) => s.mbPerSec)),
  p99Us: median(samples.map((s) => s.p99Us)),
  cpuSecPerGiB: median(samples.map((s) => s.cpuSecPerGiB)),
  cpuUsPerIo: median(samples.map((s) => s.cpuUsPerIo)),
  runs: samples.length,
});

async function main(): Promise<void> {
  const args = benchArgs(process.argv.slice(2), { reps: 3, runtimeSec: 5, quickRuntimeSec: 2, onlyChoices: ['spindle', 'qsd'] });
  requireSpindleCommands(args.only === 'qsd' ? ['loadgen'] : ['export', 'loadgen']);
  const kinds = (['spindle', 'qsd'] as const).filter((k) => !args.only || k === args.only);
  const size = args.quick ? 256 * MiB : 1024 * MiB;
  const started = Date.now();
  const cells: Cell[] = [];
  const sockets = tempDir('spindle-bench-sock-');
  const makers: (() => BenchTarget)[] = [() => shmLoopTarget(size), () => writtenFileTarget(size)];
  try {
    for (const make of makers) {
      const target = make();
      try {
        for (const aio of AIO_MODES) {
          const byWorkload = new Map(
            WORKLOADS.map((w) => [
              w.name,
              { target: target.name, aio, workload: w.name, samples: { spindle: [], qsd: [] }, errors: [] } as Cell,
            ]),
          );
          cells.push(...byWorkload.values());
          for (let rep = 0; rep < args.reps; rep++) {
            // Alternate who goes first so drift on a busy machine does not always favour one side.
            const order = rep % 2 ? [...kinds].reverse() : kinds;
            for (const kind of order) {
              const socket = join(sockets.path, `${kind}.sock`);
              try {
                await withServer(SERVERS[kind], { path: target.path, socket, aio, cache: CACHE, queues: 2 }, async (server) => {
                  for (const w of WORKLOADS) {
                    const cell = byWorkload.get(w.name)!;
                    try {
                      const s = await measure(server, {
                        socket,
                        rw: w.rw,
                        bs: w.bs,
                        iodepth: w.iodepth,
                        queues: w.queues,
                        runtimeSec: args.runtimeSec,
                      });
                      cell.samples[kind].push(s);
                      console.log(
                        `${target.name} | ${aio} | ${w.name} | ${kind}: ${fmt(s.iops, 0)} IOPS, ${fmt(s.mbPerSec)} MB/s, p99 ${fmt(s.p99Us, 0)} µs, ${fmt(s.cpuSecPerGiB, 2)} CPU s/GiB`,
                      );
                    } catch (err) {
                      cell.errors.push(`${kind}: ${(err as Error).message}`);
                      console.log(`${target.name} | ${aio} | ${w.name} | ${kind}: FAILED ${(err as Error).message}`);
                    }
                  }
                });
              } catch (err) {
                for (const c of byWorkload.values()) c.errors.push(`${kind} server: ${(err as Error).message.split('\n')[0]}`);
                console.log(`${target.name} | ${aio} | ${kind} server FAILED: ${(err as Error).message}`);
              }
            }
          }
        }
      } finally {
        target.cleanup();
      }
    }
  } finally {
    sockets.cleanup();
  }

  const results = cells.map((c) => {
    const sp = summarise(c.samples.spindle);
    const q = summarise(c.samples.qsd);
    return {
      target: c.target,
      aio: c.aio,
      workload: c.workload,
      spindle: sp,
      qsd: q,
      ratios: {
        iops: ratio(sp.iops, q.iops),
        mbPerSec: ratio(sp.mbPerSec, q.mbPerSec),
        p99: ratio(sp.p99Us, q.p99Us),
        cpuPerGiB: ratio(sp.cpuSecPerGiB, q.cpuSecPerGiB),
      },
      samples: c.samples,
      errors: c.errors,
    };
  });
  const aim = results
    .filter((r) => r.target.includes('/dev/shm') && (r.aio === 'native' || r.aio === 'io_uring'))
    .map(
      (r) =>
        `- ${r.aio}, ${r.workload}: IOPS ×${fmt(r.ratios.iops, 2)} (aim ≥ 1.00), CPU/GiB ×${fmt(r.ratios.cpuPerGiB, 2)} (aim ≤ 1.20)` +
        `${Number.isFinite(r.ratios.iops) && Number.isFinite(r.ratios.cpuPerGiB) ? (r.ratios.iops >= 1 && r.ratios.cpuPerGiB <= 1.2 ? ' ✓' : ' ✗') : ' (not measured)'}`,
    );
  const machine = machineInfo();
  const md = [
    '# vhost-user-blk: Spindle (`spindle export`) vs qemu-storage-daemon',
    '',
    `Driver: \`spindle loadgen\`; cache=${CACHE} on both sides; medians of ${args.reps} run(s) of ${args.runtimeSec} s; disk size ${size / MiB} MiB${args.quick ? ' (--quick: a smoke run, not a measurement)' : ''}.`,
    `Machine: ${machine.cpus} × ${machine.cpu}, kernel ${machine.kernel}, load at start ${(machine.loadavgAtStart as number[]).map((x) => x.toFixed(2)).join(' ')}; ${machine.qemu}. Wall time ${Math.round((Date.now() - started) / 1000)} s.`,
    '',
    markdownTable(
      [
        'target',
        'aio',
        'workload',
        'IOPS S',
        'IOPS q',
        'IOPS ×',
        'MB/s S',
        'MB/s q',
        'p99 µs S',
        'p99 µs q',
        'CPU s/GiB S',
        'CPU s/GiB q',
        'CPU ×',
        'errors',
      ],
      results.map((r) => [
        r.target,
        r.aio,
        r.workload,
        fmt(r.spindle.iops, 0),
        fmt(r.qsd.iops, 0),
        fmt(r.ratios.iops, 2),
        fmt(r.spindle.mbPerSec),
        fmt(r.qsd.mbPerSec),
        fmt(r.spindle.p99Us, 0),
        fmt(r.qsd.p99Us, 0),
        fmt(r.spindle.cpuSecPerGiB, 2),
        fmt(r.qsd.cpuSecPerGiB, 2),
        fmt(r.ratios.cpuPerGiB, 2),
        r.errors.length ? r.errors.join('; ') : '',
      ]),
    ),
    '',
    'S = Spindle, q = qemu-storage-daemon, × = S ÷ q (IOPS: higher is better for Spindle; p99 and CPU: lower is).',
    '',
    '## Aim, /dev/shm loop device',
    ...aim,
  ].join('\n');
  const files = saveResults('vhost', { machine, args, sizeBytes: size, cache: CACHE, results }, md);
  console.log(`\n${md}\n\nwritten: ${files.filter((f) => !f.includes('-latest')).join(', ')}`);
}

main().catch((err: unknown) => {
  console.error(`bench vhost: ${(err as Error).message}`);
  process.exit(1);
});
