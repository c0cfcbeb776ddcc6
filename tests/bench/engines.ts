// Engine benchmark: each Spindle engine against fio with the matching ioengine
// (psync with one thread per queue slot for threads, libaio, io_uring), same target, same queue
// depth, same run, on (a) a fully written file on the real disk and (b) a loop device over a file
// in /dev/shm. Reports ratios Spindle ÷ fio and CPU seconds per GiB; writes JSON + markdown to
// bench/results/. Reports, never asserts. usage: node dist/tests/bench/engines.js [--quick]
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import type { AioMode } from '../../electron/shared/modes.js';
import { STANDARD_WORKLOADS, runWorkload, type NamedWorkload as Workload } from '../../electron/tools/engine-workload.js';
import { attachLoop, makeFile, tempDir } from '../lib/loop.js';

const quick = process.argv.includes('--quick');
const RUNTIME = quick ? 1 : 10;
const SIZE = quick ? 256 * 2 ** 20 : 2 * 2 ** 30;
const MIB = Math.floor(SIZE / 2 ** 20);
const ENGINES: Array<{ aio: AioMode; fio: string }> = [
  { aio: 'threads', fio: 'psync' },
  { aio: 'native', fio: 'libaio' },
  { aio: 'io_uring', fio: 'io_uring' },
];

interface Measured {
  iops: number;
  mbPerSec: number;
  p99Us: number;
  cpuSeconds: number;
  cpuSecondsPerGiB: number;
}

// fio's default submits each I/O with its own call; `batched` makes it submit every completion
// batch in one call (iodepth_batch_submit = queue depth), which is what Spindle's engines do.
function fio(target: string, engine: string, w: Workload, batched = false): Measured {
  const args = [
    `--name=bench`,
    `--filename=${target}`,
    `--ioengine=${engine}`,
    '--direct=1',
    `--rw=${w.rw}`,
    `--bs=${w.bs}`,
    `--runtime=${RUNTIME}`,
    '--time_based',
    `--size=${SIZE}`,
    '--group_reporting',
    '--output-format=json',
  ];
  // psync is synchronous: queue depth becomes one thread per slot, as Spindle's pool does.
  if (w.rwmixread !== undefined) args.push(`--rwmixread=${w.rwmixread}`);
  if (engine === 'psync') args.push(`--numjobs=${w.iodepth}`, '--thread');
  else args.push(`--iodepth=${w.iodepth}`, `--iodepth_batch_complete_max=${w.iodepth}`);
  if (batched) args.push(`--iodepth_batch_submit=${w.iodepth}`);
  const out = JSON.parse(execFileSync('fio', args, { encoding: 'utf8', maxBuffer: 64 << 20 }));
  const job = out.jobs[0];
  // STANDARD_WORKLOADS read or write, never both: the one direction that moved data.
  const d = job[w.rw.endsWith('read') ? 'read' : 'write'];
  // fio reports CPU as a percentage of one CPU over the job's run time.
  const cpuSeconds = ((job.usr_cpu + job.sys_cpu) / 100) * ((job.job_runtime as number) / 1000 || RUNTIME);
  const bytes = d.io_bytes as number;
  return {
    iops: d.iops,
    mbPerSec: d.bw_bytes / 1e6,
    p99Us: (d.clat_ns?.percentile?.['99.000000'] ?? 0) / 1000,
    cpuSeconds,
    cpuSecondsPerGiB: bytes ? cpuSeconds / (bytes / 2 ** 30) : 0,
  };
}

async function spindle(target: string, aio: AioMode, w: Workload): Promise<Measured> {
  const b = await BlockBackend.open(target, { aio, cache: 'none', nowait: 'off', queueDepth: Math.max(32, w.iodepth) });
  try {
    return await runWorkload(b, w, RUNTIME);
  } finally {
    await b.close();
  }
}

const dir = tempDir('spindle-bench-', '/var/tmp');
const shm = tempDir('spindle-bench-', '/dev/shm');
const rows: Array<Record<string, unknown>> = [];
try {
  const file = `${dir.path}/written.img`;
  execFileSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${MIB}`, 'oflag=direct', 'status=none']);
  const loop = attachLoop(makeFile(`${shm.path}/backing.img`, SIZE, { written: true }));
  try {
    for (const [label, target] of [
      ['written file', file],
      ['loop on /dev/shm', loop.device],
    ] as const) {
      for (const e of ENGINES) {
        for (const w of STANDARD_WORKLOADS) {
          const s = await spindle(target, e.aio, w);
          const f = fio(target, e.fio, w);
          const fb = e.fio === 'psync' ? null : fio(target, e.fio, w, true);
          rows.push({
            target: label,
            engine: e.aio,
            fio: e.fio,
            workload: w.name,
            spindle: s,
            fioResult: f,
            fioBatched: fb,
            iopsRatio: s.iops / f.iops,
            iopsRatioBatched: fb ? s.iops / fb.iops : null,
            cpuPerGiB: { spindle: s.cpuSecondsPerGiB, fio: f.cpuSecondsPerGiB },
          });
          const batchedText = fb ? `  batched fio ${fb.iops.toFixed(0).padStart(7)} ratio ${(s.iops / fb.iops).toFixed(2)}` : '';
          console.log(
            `${label.padEnd(16)} ${e.aio.padEnd(9)} ${w.name.padEnd(18)} spindle ${s.iops.toFixed(0).padStart(7)} IOPS  fio ${f.iops.toFixed(0).padStart(7)} IOPS  ratio ${(s.iops / f.iops).toFixed(2)}${batchedText}  CPU s/GiB ${s.cpuSecondsPerGiB.toFixed(2)} vs ${f.cpuSecondsPerGiB.toFixed(2)}`,
          );
        }
      }
    }
  } finally {
    loop.detach();
  }
} finally {
  dir.cleanup();
  shm.cleanup();
}

mkdirSync('bench/results', { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const name = `bench/results/engines-${quick ? 'quick-' : ''}${stamp}`;
writeFileSync(`${name}.json`, JSON.stringify({ quick, runtimeSeconds: RUNTIME, sizeBytes: SIZE, rows }, null, 2));
const md = [
  '| target | engine | workload | Spindle IOPS | fio IOPS | ratio | batched fio IOPS | ratio | Spindle p99 µs | fio p99 µs | CPU s/GiB Spindle | CPU s/GiB fio |',
  '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
];
for (const r of rows) {
  const s = r.spindle as Measured,
    f = r.fioResult as Measured,
    fb = r.fioBatched as Measured | null;
  const batched = fb ? `${fb.iops.toFixed(0)} | ${(s.iops / fb.iops).toFixed(2)}` : '– | –';
  md.push(
    `| ${r.target} | ${r.engine} (fio ${r.fio}) | ${r.workload} | ${s.iops.toFixed(0)} | ${f.iops.toFixed(0)} | ${(s.iops / f.iops).toFixed(2)} | ${batched} | ${s.p99Us} | ${f.p99Us.toFixed(0)} | ${s.cpuSecondsPerGiB.toFixed(2)} | ${f.cpuSecondsPerGiB.toFixed(2)} |`,
  );
}
const intro = `runtime ${RUNTIME} s per cell, ${MIB} MiB targets, O_DIRECT, Spindle's buffers page-aligned like guest RAM.
"fio" submits each I/O with its own call (fio's default); "batched fio" submits each completion batch in one
call (iodepth_batch_submit = queue depth), as Spindle does.`;
writeFileSync(`${name}.md`, `# Engines vs fio${quick ? ' (quick run: not a measurement)' : ''}\n\n${intro}\n\n${md.join('\n')}\n`);
console.log(`wrote ${name}.json and ${name}.md`);
