// The aio comparison as a benchmark: the 2009 post's matrix (write then
// read at 16k, 64k, 256k records and 20M transfers, O_DIRECT, one request in flight) through the
// full virtio-blk path for threads, native, native+nowait and io_uring, on (a) a fresh sparse image
// on the machine's disk (made sparse again before every write run) and (b) a preallocated one; plus
// the same matrix measured by fio directly on the file (psync, iodepth 1: what iozone -I and dd do),
// the "bare metal" line the post's native row was. Medians of several repetitions; JSON + markdown
// to bench/results/. Reports, never asserts. usage: node dist/tests/bench/compare.js [--quick]
import { execFileSync } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createImage } from '../../electron/host/images/create-image.js';
import { fallocate } from '../../electron/dataplane/native/os.js';
import { POST_WORKLOADS, recordLabel, regionBytes, runComparison, type Workload } from '../../electron/host/bench/compare.js';
import { ENGINE_VARIANTS, variantName } from '../../electron/shared/modes.js';
import type { BenchRow } from '../../electron/shared/api.js';

const quick = process.argv.includes('--quick');
const BYTES_PER_RUN = quick ? 4 << 20 : 256 << 20;
const REPEATS = quick ? 1 : 3;
const IMAGE_BYTES = 1 << 30;

interface Cell {
  variant: string;
  op: BenchRow['op'];
  recordBytes: number;
  mbps: number;
  kbps: number;
  cpuSec: number;
  nowaitFallbacks?: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function punch(path: string, bytes: number): void {
  const fd = openSync(path, 'r+');
  try {
    fallocate(fd, 'punch-hole', 0, bytes);
  } finally {
    closeSync(fd);
  }
}

/** fio on the file itself: synchronous O_DIRECT I/O, one request at a time, a fixed number of bytes. */
function fioCell(path: string, w: Workload, freshSparse: boolean): Omit<Cell, 'variant'> {
  const size = regionBytes(w.recordBytes, BYTES_PER_RUN, IMAGE_BYTES);
  if (w.op === 'write' && freshSparse) punch(path, size);
  const out = JSON.parse(
    execFileSync(
      'fio',
      [
        '--name=bare',
        `--filename=${path}`,
        `--rw=${w.op}`,
        `--bs=${w.recordBytes}`,
        `--size=${size}`,
        '--direct=1',
        '--ioengine=psync',
        '--iodepth=1',
        '--numjobs=1',
        '--output-format=json',
      ],
      { encoding: 'utf8', maxBuffer: 16 << 20 },
    ),
  );
  const job = out.jobs[0];
  const d = job[w.op];
  const seconds = d.runtime / 1000 || 1e-9;
  const bytes = d.io_bytes;
  return {
    op: w.op,
    recordBytes: w.recordBytes,
    mbps: bytes / seconds / 1e6,
    kbps: bytes / seconds / 1024,
    cpuSec: ((job.usr_cpu + job.sys_cpu) / 100) * seconds,
  };
}

function medianCells(runs: Cell[][]): Cell[] {
  return runs[0]!.map((c, i) => ({
    ...c,
    mbps: median(runs.map((r) => r[i]!.mbps)),
    kbps: median(runs.map((r) => r[i]!.kbps)),
    cpuSec: median(runs.map((r) => r[i]!.cpuSec)),
    ...(c.nowaitFallbacks !== undefined ? { nowaitFallbacks: median(runs.map((r) => r[i]!.nowaitFallbacks ?? 0)) } : {}),
  }));
}

const fromRow = (r: BenchRow): Cell => ({
  variant: variantName({ aio: r.mode, nowait: r.nowait ?? false }),
  op: r.op,
  recordBytes: r.recordBytes,
  mbps: r.mbps,
  kbps: r.kbps ?? 0,
  cpuSec: r.cpuSec,
  nowaitFallbacks: r.nowaitFallbacks ?? 0,
});

async function measure(path: string, freshSparse: boolean): Promise<Cell[]> {
  const runs: Cell[][] = [];
  for (let i = 0; i < REPEATS; i++) {
    const bare = POST_WORKLOADS.map((w) => ({ variant: 'bare metal (fio psync)', ...fioCell(path, w, freshSparse) }));
    const rows = await runComparison({ path, variants: ENGINE_VARIANTS, bytesPerRun: BYTES_PER_RUN, freshSparseWrites: freshSparse });
    runs.push([...bare, ...rows.map(fromRow)]);
  }
  return medianCells(runs);
}

/** The post's layout: modes as rows, KB/s for the record columns, MB/s for 20M, then CPU. */
function markdownTable(cells: Cell[]): string {
  const variants = [...new Set(cells.map((c) => c.variant))];
  const cols = POST_WORKLOADS.map((w) => `${w.op} ${recordLabel(w.recordBytes)} ${w.recordBytes >= 1 << 20 ? 'MB/s' : 'KB/s'}`);
  const lines = [
    `| mode | ${cols.join(' | ')} | CPU s | nowait fallbacks | ÷ bare metal (geomean) |`,
    `|---|${cols.map(() => '---:').join('|')}|---:|---:|---:|`,
  ];
  const bare = cells.filter((c) => c.variant === variants[0]);
  for (const v of variants) {
    const mine = cells.filter((c) => c.variant === v);
    const vals = POST_WORKLOADS.map((w) => {
      const c = mine.find((x) => x.op === w.op && x.recordBytes === w.recordBytes);
      if (!c) return '—';
      return w.recordBytes >= 1 << 20 ? c.mbps.toFixed(0) : Math.round(c.kbps).toString();
    });
    const cpu = mine.reduce((a, c) => a + c.cpuSec, 0);
    const fb = v === 'native+nowait' ? String(mine.reduce((a, c) => a + (c.nowaitFallbacks ?? 0), 0)) : '—';
    // Throughput relative to fio on the same file in the same run, one number per mode.
    const ratios = mine
      .map((c) => c.mbps / (bare.find((b) => b.op === c.op && b.recordBytes === c.recordBytes)?.mbps ?? NaN))
      .filter((r) => r > 0 && Number.isFinite(r));
    const geo = ratios.length ? Math.exp(ratios.reduce((a, r) => a + Math.log(r), 0) / ratios.length) : NaN;
    lines.push(`| ${v} | ${vals.join(' | ')} | ${cpu.toFixed(2)} | ${fb} | ${Number.isNaN(geo) ? '—' : geo.toFixed(2)} |`);
  }
  return lines.join('\n');
}

const dir = mkdtempSync('/var/tmp/spindle-bench-compare-');
try {
  const fsType = execFileSync('findmnt', ['-no', 'FSTYPE', '-T', dir], { encoding: 'utf8' }).trim();
  const sparse = join(dir, 'sparse.img');
  const prealloc = join(dir, 'prealloc.img');
  createImage(sparse, IMAGE_BYTES);
  createImage(prealloc, IMAGE_BYTES, { preallocate: true });
  const allocated = (p: string) => {
    const fd = openSync(p, 'r');
    try {
      return fstatSync(fd).blocks * 512;
    } finally {
      closeSync(fd);
    }
  };
  console.log(`compare: ${fsType} at ${dir}; ${BYTES_PER_RUN >> 20} MiB per run, ${REPEATS} repetition(s), medians`);
  const results: Record<string, Cell[]> = {};
  for (const [label, path, fresh] of [
    ['fresh sparse image', sparse, true],
    ['preallocated image', prealloc, false],
  ] as const) {
    const cells = await measure(path, fresh);
    results[label] = cells;
    console.log(`\n${label} (${allocated(path) >> 20} MiB allocated after the runs)\n${markdownTable(cells)}`);
  }
  mkdirSync('bench/results', { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const name = `bench/results/compare-${quick ? 'quick-' : ''}${stamp}`;
  const settings = {
    quick,
    fsType,
    bytesPerRun: BYTES_PER_RUN,
    repeats: REPEATS,
    iodepth: 1,
    cache: 'none',
    directIo: true,
    imageBytes: IMAGE_BYTES,
  };
  writeFileSync(`${name}.json`, JSON.stringify({ settings, results }, null, 2));
  writeFileSync(
    `${name}.md`,
    [
      `# The 2009 native-AIO comparison, through Spindle's virtio-blk path${quick ? ' (quick run: not a measurement)' : ''}`,
      '',
      `${fsType} on the machine's disk; cache none (O_DIRECT) for every mode; one request in flight (iozone -I, dd oflag=direct);`,
      `${BYTES_PER_RUN >> 20} MiB per run (20M: whole transfers, at least one), median of ${REPEATS}. KB/s = 1024 bytes/s (iozone), MB/s = 10^6 bytes/s (dd).`,
      "Backend CPU: the disk's IOThread + thread-pool workers + io_uring kernel workers; fio: its usr+sys.",
      'The sparse image is made sparse again (holes punched) before every write run, so every mode pays for block allocation.',
      ...Object.entries(results).flatMap(([label, cells]) => ['', `## ${label}`, '', markdownTable(cells)]),
      '',
    ].join('\n'),
  );
  console.log(`\ncompare: wrote ${name}.json and ${name}.md`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
