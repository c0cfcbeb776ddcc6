// Spindle's qcow2 driver against qemu-storage-daemon's, and against Spindle's raw on the same
// engine (the qcow2 issue, section 4). Targets: an ext4 filesystem on a loop device over a sparse
// file in /dev/shm (RAM: the software cost shows), and one over a file on the machine's own disk
// (the tmpdir, as table.ts; the loop device does direct I/O on its file, so O_DIRECT reaches the
// disk). On each: a raw file written with data, a qcow2 image (64 KiB clusters) converted from it
// (every cluster allocated with data, laid out in guest order), and per allocating run a fresh
// empty qcow2 (`qemu-img create`) or a fresh sparse raw file of four times the size.
// For each target and mode, Spindle qcow2, qemu-storage-daemon qcow2 (file node with the same aio
// and cache, qcow2 node over it) and Spindle raw run each workload in alternating order for several
// rounds; the table shows medians of IOPS with the serving process's CPU per I/O, the ratios
// Spindle/qsd and qcow2/raw, and what `qemu-img check` said after every qcow2 run.
// It reports; it never asserts timings.
//
// usage: node dist/tests/bench/qcow2.js [--quick] [--reps N] [--runtime S] [--only shm|disk]
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { AioMode, CacheMode } from '../../electron/shared/modes.js';
import type { Workload } from '../../electron/tools/workload.js';
import { qsdServer, spindleExportServer, type DiskServerFactory } from '../guest/disk-server.js';
import { makeFile, mountFs, tempDir, type MountedFs } from '../lib/loop.js';
import { qemuCheck, qemuImg } from '../lib/qcow2.js';
import { benchArgs, fmt, machineInfo, markdownTable, median, ratio, saveResults } from './lib/report.js';
import { measure, requireSpindleCommands, synced, withServer, writtenAndSynced } from './lib/setup.js';

const MiB = 1 << 20;
const CLUSTER = 64 * 1024;
/** The fresh images of the allocating rows are this many times the disk: most writes allocate. */
const FRESH_FACTOR = 4;

type TargetKind = 'shm' | 'disk';
const TARGET_NAMES: Record<TargetKind, string> = {
  shm: 'ext4 on loop over /dev/shm',
  disk: 'ext4 on loop over the disk',
};

interface Mode {
  aio: AioMode;
  cache: CacheMode;
}
const MODES: Mode[] = [
  { aio: 'threads', cache: 'writeback' },
  { aio: 'io_uring', cache: 'none' },
  { aio: 'native', cache: 'none' },
];
const modeName = (m: Mode): string => `${m.aio}/${m.cache}`;

/** qcow2: Spindle's qcow2 driver; qsd: qemu-storage-daemon's; raw: Spindle on the raw file. */
type Side = 'qcow2' | 'qsd' | 'raw';
const SIDES: Side[] = ['qcow2', 'qsd', 'raw'];

interface Load extends Workload {
  name: string;
  /** allocated: the written images; fresh: a new empty image (sparse raw file) for every run. */
  image: 'allocated' | 'fresh';
}
const WORKLOADS: Load[] = [
  { name: '4k randread QD32', rw: 'randread', bs: 4096, iodepth: 32, image: 'allocated' },
  { name: '4k randwrite QD32', rw: 'randwrite', bs: 4096, iodepth: 32, image: 'allocated' },
  { name: '4k randwrite QD32, allocating', rw: 'randwrite', bs: 4096, iodepth: 32, image: 'fresh' },
  { name: '1M read QD4', rw: 'read', bs: MiB, iodepth: 4, image: 'allocated' },
  { name: '1M write QD4', rw: 'write', bs: MiB, iodepth: 4, image: 'allocated' },
];

interface Sample {
  iops: number;
  p99Us: number;
  cpuUsPerIo: number;
  ops: number;
  /** Fresh qcow2 runs: clusters allocated by the run (from qemu-img check). */
  allocatedClusters?: number;
}
interface Cell {
  target: TargetKind;
  mode: string;
  workload: string;
  samples: Record<Side, Sample[]>;
  /** Every qcow2 run's `qemu-img check` that was not clean: side and what it said. */
  checkProblems: string[];
  checks: number;
  errors: string[];
}

interface Target {
  kind: TargetKind;
  fs: MountedFs;
  /** Whether the loop device under the filesystem does direct I/O on its file. */
  loopDio: boolean;
  raw: string;
  qcow2: string;
  freshQcow2: string;
  freshRaw: string;
}

function makeTarget(kind: TargetKind, size: number): Target {
  // raw + qcow2 (+ its metadata) + one fresh image at a time, with room to spare; the backing file
  // is sparse and `discard` gives a deleted fresh image's blocks back to it.
  const fsMiB = Math.ceil(((2 + FRESH_FACTOR) * size * 1.1) / MiB) + 256;
  const fs = mountFs('ext4', fsMiB, {
    base: kind === 'shm' ? '/dev/shm' : tmpdir(),
    mountOptions: 'discard',
    loopDirectIo: kind === 'disk',
  });
  try {
    const raw = writtenAndSynced(join(fs.mountpoint, 'disk.raw'), size);
    const qcow2 = join(fs.mountpoint, 'disk.qcow2');
    qemuImg('convert', '-q', '-f', 'raw', '-O', 'qcow2', '-o', `cluster_size=${CLUSTER}`, raw, qcow2);
    synced(qcow2);
    const info = JSON.parse(qemuImg('check', '--output=json', qcow2)) as { 'allocated-clusters'?: number; 'total-clusters'?: number };
    if (info['allocated-clusters'] !== info['total-clusters'])
      throw new Error(`the written qcow2 image has ${info['allocated-clusters']}/${info['total-clusters']} clusters allocated`);
    let loopDio = false;
    try {
      loopDio = readFileSync(`/sys/block/${basename(fs.device.device)}/loop/dio`, 'utf8').trim() === '1';
    } catch {
      /* no sysfs entry: report off */
    }
    return {
      kind,
      fs,
      loopDio,
      raw,
      qcow2,
      freshQcow2: join(fs.mountpoint, 'fresh.qcow2'),
      freshRaw: join(fs.mountpoint, 'fresh.raw'),
    };
  } catch (err) {
    fs.cleanup();
    throw err;
  }
}

/** `qemu-img check` after a run: null when clean, else its summary; and the allocated clusters. */
function checkImage(path: string): { problem: string | null; allocated?: number } {
  const { code, out } = qemuCheck(path);
  const m = /(\d+)\/(\d+) = [\d.]+% allocated/.exec(out);
  const allocated = m ? Number(m[1]) : undefined;
  if (code === 0) return { problem: null, allocated };
  const lines = out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/allocated,|^Image end offset/.test(l));
  return { problem: `exit ${code}: ${lines.slice(0, 3).join(' / ')}`, allocated };
}

async function main(): Promise<void> {
  const args = benchArgs(process.argv.slice(2), { reps: 3, runtimeSec: 5, quickRuntimeSec: 1, onlyChoices: ['shm', 'disk'] });
  requireSpindleCommands(['export', 'loadgen']);
  for (const tool of ['qemu-img', 'qemu-storage-daemon', 'mkfs.ext4']) {
    if (spawnSync(tool, ['--version']).error) throw new Error(`${tool} is not installed (scripts/setup.sh installs it)`);
  }
  const size = args.quick ? 256 * MiB : 1024 * MiB;
  const freshSize = FRESH_FACTOR * size;
  const kinds: TargetKind[] = (['shm', 'disk'] as const).filter((k) => !args.only || args.only === k);
  const machine = machineInfo();
  const started = Date.now();
  const sockets = tempDir('spindle-qcow2-sock-');
  const cells: Cell[] = [];
  const loopDio: Partial<Record<TargetKind, boolean>> = {};
  try {
    for (const kind of kinds) {
      const t = makeTarget(kind, size);
      loopDio[kind] = t.loopDio;
      try {
        for (const m of MODES) {
          const rowCells = WORKLOADS.map((w) => {
            const c: Cell = {
              target: kind,
              mode: modeName(m),
              workload: w.name,
              samples: { qcow2: [], qsd: [], raw: [] },
              checkProblems: [],
              checks: 0,
              errors: [],
            };
            return c;
          });
          cells.push(...rowCells);
          for (let rep = 0; rep < args.reps; rep++) {
            const order = rep % 2 ? [...SIDES].reverse() : SIDES;
            for (const side of order) {
              for (const [i, w] of WORKLOADS.entries()) {
                const cell = rowCells[i]!;
                const format = side === 'raw' ? 'raw' : 'qcow2';
                let path = format === 'raw' ? t.raw : t.qcow2;
                if (w.image === 'fresh') {
                  path = format === 'raw' ? t.freshRaw : t.freshQcow2;
                  rmSync(path, { force: true });
                  if (format === 'raw') makeFile(path, freshSize);
                  else qemuImg('create', '-q', '-f', 'qcow2', '-o', `cluster_size=${CLUSTER}`, path, String(freshSize));
                }
                let sample: Sample | undefined;
                try {
                  const socket = join(sockets.path, `${side}.sock`);
                  const factory: DiskServerFactory = side === 'qsd' ? qsdServer : spindleExportServer;
                  const { value } = await withServer(factory, { path, socket, aio: m.aio, cache: m.cache, queues: 1, format }, (server) =>
                    measure(server, { socket, rw: w.rw, bs: w.bs, iodepth: w.iodepth, queues: 1, runtimeSec: args.runtimeSec }),
                  );
                  sample = { iops: value.iops, p99Us: value.p99Us, cpuUsPerIo: value.cpuUsPerIo, ops: value.ops };
                  cell.samples[side].push(sample);
                } catch (err) {
                  cell.errors.push(`${side}: ${(err as Error).message.split('\n')[0]}`);
                }
                if (format === 'qcow2') {
                  const c = checkImage(path);
                  cell.checks++;
                  if (c.problem) cell.checkProblems.push(`${side === 'qsd' ? 'qsd' : 'Spindle'}: ${c.problem}`);
                  if (sample && w.image === 'fresh') sample.allocatedClusters = c.allocated;
                }
                // A writeback run leaves dirty pages; an O_DIRECT run after it would first wait for
                // their writeback (ext4 flushes the range), so they go to disk here, unmeasured.
                if (w.image === 'fresh') rmSync(path, { force: true });
                else synced(path);
                console.log(
                  `${TARGET_NAMES[kind]}, ${modeName(m)} | ${w.name} | ${side}: ${
                    sample ? `${fmt(sample.iops, 0)} IOPS, ${fmt(sample.cpuUsPerIo)} µs CPU/IO, p99 ${fmt(sample.p99Us, 0)} µs` : 'FAILED'
                  }${cell.checkProblems.length ? ` (qemu-img check: ${cell.checkProblems.at(-1)})` : ''}`,
                );
              }
            }
          }
        }
        // The written image after every round of every mode: still consistent?
        const final = checkImage(t.qcow2);
        if (final.problem)
          cells
            .filter((c) => c.target === kind)
            .at(-1)
            ?.checkProblems.push(`final check: ${final.problem}`);
      } finally {
        t.fs.cleanup();
      }
    }
  } finally {
    sockets.cleanup();
  }

  const iopsOf = (s: Sample[]): number => median(s.map((x) => x.iops));
  const cellText = (s: Sample[]): string => {
    if (!s.length) return '—';
    const iops = iopsOf(s);
    return `${Number.isFinite(iops) ? `${fmt(iops / 1000, 1)}k` : '–'} (${fmt(median(s.map((x) => x.cpuUsPerIo)))} µs)`;
  };
  const ratioText = (a: Sample[], b: Sample[]): string => fmt(ratio(iopsOf(a), iopsOf(b)), 2);
  /** Fresh runs: the share of writes that allocated a cluster (the rest landed on clusters allocated earlier in the run). */
  const allocShare = (s: Sample[]): string => {
    const shares = s.filter((x) => x.allocatedClusters !== undefined && x.ops > 0).map((x) => x.allocatedClusters! / x.ops);
    return shares.length ? `${fmt(median(shares) * 100, 0)}%` : '–';
  };
  const rows = cells.map((c) => {
    const fresh = c.workload.includes('allocating');
    const notes = [
      ...(fresh ? [`writes that allocated: Spindle ${allocShare(c.samples.qcow2)}, qsd ${allocShare(c.samples.qsd)}`] : []),
      ...c.errors,
    ];
    return [
      `${TARGET_NAMES[c.target]}, ${c.mode}`,
      c.workload,
      cellText(c.samples.qcow2),
      cellText(c.samples.qsd),
      cellText(c.samples.raw),
      ratioText(c.samples.qcow2, c.samples.qsd),
      ratioText(c.samples.qcow2, c.samples.raw),
      c.checks === 0 ? '—' : c.checkProblems.length ? c.checkProblems.join('; ') : `clean (${c.checks})`,
      notes.join('; '),
    ];
  });
  const wallSec = Math.round((Date.now() - started) / 1000);
  const md = [
    `# Spindle qcow2 vs qemu-storage-daemon qcow2 vs Spindle raw (${new Date().toISOString().slice(0, 10)})`,
    '',
    `Driver: \`spindle loadgen\` (a vhost-user-blk frontend), 1 queue; medians of ${args.reps} alternating round(s) of ${args.runtimeSec} s; disk ${size / MiB} MiB, qcow2 with ${CLUSTER / 1024} KiB clusters, every cluster allocated with data; the allocating rows use a fresh empty ${freshSize / MiB} MiB image (a sparse raw file for the raw column) for every run${args.quick ? ' (--quick: a smoke run, not a measurement)' : ''}. In brackets: the serving process's CPU per I/O.`,
    `Targets: ${kinds.map((k) => `${TARGET_NAMES[k]} (loop direct I/O ${loopDio[k] ? 'on' : 'off'})`).join('; ')}.`,
    `Machine: ${machine.cpus as number} × ${machine.cpu as string}, kernel ${machine.kernel as string}, load at start ${(machine.loadavgAtStart as number[]).map((x) => x.toFixed(2)).join(' ')}; ${machine.qemu as string}. Wall time ${wallSec} s.`,
    `Aims (qcow2 issue, section 4): Spindle/qsd ≥ 1.00 and qcow2/raw ≥ 0.95 on allocated clusters. qemu-img check: run after every qcow2 run (the count in brackets).`,
    '',
    markdownTable(
      ['target, mode', 'workload', 'Spindle qcow2', 'qsd qcow2', 'Spindle raw', 'Spindle/qsd', 'qcow2/raw', 'qemu-img check', 'notes'],
      rows,
    ),
  ].join('\n');
  const files = saveResults(
    'qcow2',
    { machine, args, sizeBytes: size, freshSizeBytes: freshSize, clusterBytes: CLUSTER, loopDio, wallSec, cells },
    md,
  );
  console.log(`\n${md}\n\nwritten: ${files.filter((f) => !f.includes('-latest')).join(', ')}`);
  const failed = cells.filter((c) => c.errors.length || c.checkProblems.length).length;
  if (failed) {
    console.error(`bench qcow2: ${failed} cell(s) with errors or a qemu-img check that was not clean`);
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  console.error(`bench qcow2: ${(err as Error).message}`);
  process.exit(1);
});
