// Does native AIO with RWF_NOWAIT (and per-request fallback to the thread pool) make
// image files safe for native? 4k random writes QD32 through `spindle loadgen` against
// `spindle export`, on a fresh sparse image and then on the same image fully written, for
// threads, native, native+nowait and io_uring, on ext4 on the machine's disk and on an ext4 loop
// device over /dev/shm. Reports; never asserts timings.
//
// usage: node dist/tests/bench/nowait.js [--quick] [--reps N] [--runtime S]
import { execFileSync } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ENGINE_VARIANTS, variantName, type AioMode, type NowaitMode } from '../../electron/shared/modes.js';
import { parseExportStats, spindleExportServer } from '../guest/disk-server.js';
import { makeFile, mountFs, tempDir } from '../lib/loop.js';
import { benchArgs, fmt, machineInfo, markdownTable, median, saveResults } from './lib/report.js';
import { measure, requireSpindleCommands, withServer, writtenAndSynced, type Sample } from './lib/setup.js';

const MiB = 1 << 20;

interface Mode {
  name: string;
  aio: AioMode;
  nowait?: NowaitMode;
}
// nowait is set only where it applies (native); the others keep export's default.
const MODES: Mode[] = ENGINE_VARIANTS.map((v) => ({
  name: variantName(v),
  aio: v.aio,
  ...(v.aio === 'native' ? { nowait: v.nowait ? ('on' as const) : ('off' as const) } : {}),
}));

interface Run extends Sample {
  stallMaxUs: number;
  writeSubmitted: number;
  writeFallbacks: number;
  fallbackPct: number;
  exportStats: Record<string, unknown> | null;
}

/** A numeric field at `path` in export's stats, NaN when it is not there. */
const statAt = (stats: Record<string, unknown> | null, ...path: string[]): number => {
  let v: unknown = stats;
  for (const k of path) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return typeof v === 'number' ? v : NaN;
};

/** A field of the mount holding `dir` (stat -f cannot tell ext4 from ext2). */
const mountField = (dir: string, field: 'FSTYPE' | 'OPTIONS'): string => {
  try {
    return execFileSync('findmnt', ['-n', '-o', field, '--target', dir], { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
};

async function main(): Promise<void> {
  const args = benchArgs(process.argv.slice(2), { reps: 1, runtimeSec: 20, quickRuntimeSec: 3 });
  requireSpindleCommands(['export', 'loadgen']);
  const size = args.quick ? 512 * MiB : 2048 * MiB;
  const started = Date.now();
  const results: {
    location: string;
    fs: string;
    mountOptions: string;
    file: 'sparse' | 'written';
    mode: string;
    runs: Run[];
    errors: string[];
  }[] = [];

  const locations: { name: string; open(): { dir: string; cleanup(): void } }[] = [
    {
      name: 'machine disk (tmpdir)',
      open: () => {
        const d = tempDir('spindle-nowait-');
        return { dir: d.path, cleanup: d.cleanup };
      },
    },
    {
      name: 'ext4 loop device over /dev/shm',
      open: () => {
        const m = mountFs('ext4', Math.ceil((size * 1.2) / MiB), { base: '/dev/shm' });
        return { dir: m.mountpoint, cleanup: m.cleanup };
      },
    },
  ];

  for (const loc of locations) {
    const where = loc.open();
    try {
      const fs = mountField(where.dir, 'FSTYPE');
      const opts = mountField(where.dir, 'OPTIONS');
      const image = join(where.dir, 'disk.img');
      const socket = join(where.dir, 'export.sock');
      for (const file of ['sparse', 'written'] as const) {
        if (file === 'written') writtenAndSynced(image, size); // every block allocated and written once
        for (const mode of MODES) {
          const entry = { location: loc.name, fs, mountOptions: opts, file, mode: mode.name, runs: [] as Run[], errors: [] as string[] };
          results.push(entry);
          for (let rep = 0; rep < args.reps; rep++) {
            if (file === 'sparse') {
              rmSync(image, { force: true });
              makeFile(image, size);
            } // fresh: nothing allocated yet
            try {
              const { value, exitOutput } = await withServer(
                spindleExportServer,
                { path: image, socket, aio: mode.aio, cache: 'none', nowait: mode.nowait },
                (server) => measure(server, { socket, rw: 'randwrite', bs: 4096, iodepth: 32, queues: 1, runtimeSec: args.runtimeSec }),
              );
              const stats = parseExportStats(exitOutput);
              const writeSubmitted = statAt(stats, 'nowait', 'writeSubmitted');
              const writeFallbacks = statAt(stats, 'nowait', 'writeFallbacks');
              const run: Run = {
                ...value,
                exportStats: stats,
                stallMaxUs: statAt(stats, 'submitStallMaxUs'),
                writeSubmitted,
                writeFallbacks,
                fallbackPct: writeSubmitted > 0 ? (100 * writeFallbacks) / writeSubmitted : 0,
              };
              entry.runs.push(run);
              console.log(
                `${loc.name} | ${file} | ${mode.name}: ${fmt(run.iops, 0)} IOPS, p99 ${fmt(run.p99Us, 0)} µs, max stall ${fmt(run.stallMaxUs, 0)} µs, ` +
                  `${fmt(run.cpuUsPerIo, 1)} CPU µs/IO, fallbacks ${fmt(run.fallbackPct, 1)}%${stats ? '' : ' (no stats line from export)'}; allocated ${fmt((statSync(image).blocks * 512) / MiB, 0)} MiB`,
              );
            } catch (err) {
              entry.errors.push((err as Error).message);
              console.log(`${loc.name} | ${file} | ${mode.name}: FAILED ${(err as Error).message}`);
            }
          }
        }
      }
    } finally {
      where.cleanup();
    }
  }

  const rows = results.map((r) => {
    const m = (f: (x: Run) => number): number => median(r.runs.map(f));
    return {
      ...r,
      median: {
        iops: m((x) => x.iops),
        p99Us: m((x) => x.p99Us),
        stallMaxUs: m((x) => x.stallMaxUs),
        cpuUsPerIo: m((x) => x.cpuUsPerIo),
        fallbackPct: m((x) => x.fallbackPct),
        writeFallbacks: m((x) => x.writeFallbacks),
      },
    };
  });
  const machine = machineInfo();
  const md = [
    '# Native AIO on image files: RWF_NOWAIT with thread-pool fallback',
    '',
    `4k random write QD32 for ${args.runtimeSec} s through \`spindle loadgen\` against \`spindle export --cache none\`; a fresh sparse ${size / MiB} MiB image per run, then the same image fully written; medians of ${args.reps} run(s)${args.quick ? ' (--quick: a smoke run, not a measurement)' : ''}.`,
    `Machine: ${machine.cpus} × ${machine.cpu}, kernel ${machine.kernel}, load at start ${(machine.loadavgAtStart as number[]).map((x) => x.toFixed(2)).join(' ')}. Wall time ${Math.round((Date.now() - started) / 1000)} s.`,
    '',
    markdownTable(
      [
        'location',
        'fs (mount options)',
        'file',
        'mode',
        'IOPS',
        'p99 µs',
        'max submit stall µs',
        'CPU µs/IO',
        'fallbacks',
        'fallback %',
        'errors',
      ],
      rows.map((r) => [
        r.location,
        `${r.fs} (${r.mountOptions})`,
        r.file,
        r.mode,
        fmt(r.median.iops, 0),
        fmt(r.median.p99Us, 0),
        fmt(r.median.stallMaxUs, 0),
        fmt(r.median.cpuUsPerIo, 1),
        fmt(r.median.writeFallbacks, 0),
        fmt(r.median.fallbackPct, 1),
        r.errors.join('; '),
      ]),
    ),
    '',
    'CPU µs/IO is the whole export process (user + system, all threads, io_uring workers included) divided by completed I/Os.',
    'Aim: native+nowait ≥ the best of threads and io_uring on the sparse file; equal to plain native on the written file with 0 fallbacks; max stall < 1 ms where plain native shows tens of ms.',
  ].join('\n');
  const files = saveResults('nowait', { machine, args, sizeBytes: size, results: rows }, md);
  console.log(`\n${md}\n\nwritten: ${files.filter((f) => !f.includes('-latest')).join(', ')}`);
}

main().catch((err: unknown) => {
  console.error(`bench nowait: ${(err as Error).message}`);
  process.exit(1);
});
