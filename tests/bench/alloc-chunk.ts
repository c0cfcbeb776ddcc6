// The allocation chunk of allocation-aware native (native/engine/extent_map.h): 4k random writes
// QD32 on a fresh sparse file on the machine's disk, through the engine (no vhost-user), for each
// chunk size, beside plain native, native+nowait and threads on the same fresh file. Reports IOPS,
// p99, the longest io_submit, the writes the pool did and the misses. Reports; never asserts.
//
// usage: node dist/tests/bench/alloc-chunk.js [--quick] [--reps N] [--runtime S]
import { join } from 'node:path';
import { BlockBackend, type BackendOptions } from '../../electron/dataplane/block/backend.js';
import { runWorkload } from '../../electron/tools/engine-workload.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { benchArgs, fmt, machineInfo, markdownTable, median, saveResults } from './lib/report.js';

const KiB = 1024;
const MiB = 1 << 20;
const CHUNKS = [64 * KiB, 256 * KiB, MiB, 4 * MiB, 16 * MiB];
const VARIANTS: { name: string; options: BackendOptions }[] = [
  { name: 'threads/none', options: { aio: 'threads', cache: 'none' } },
  { name: 'native/none', options: { aio: 'native', cache: 'none', nowait: 'off' } },
  { name: 'native/none+nowait', options: { aio: 'native', cache: 'none', nowait: 'on' } },
  ...CHUNKS.map((c) => ({
    name: `allocation-aware, chunk ${c >= MiB ? `${c / MiB} MiB` : `${c / KiB} KiB`}`,
    options: { aio: 'native' as const, cache: 'none' as const, nowait: 'auto' as const, allocChunk: c },
  })),
];

async function main(): Promise<void> {
  const args = benchArgs(process.argv.slice(2), { reps: 3, runtimeSec: 5, quickRuntimeSec: 2 });
  const size = args.quick ? 512 * MiB : 2048 * MiB;
  const dir = tempDir('spindle-alloc-chunk-');
  const path = join(dir.path, 'sparse.img');
  const samples = new Map<string, { iops: number; p99Us: number; stallMaxUs: number; poolWrites: number; misses: number }[]>();
  const started = Date.now();
  try {
    for (let rep = 0; rep < args.reps; rep++) {
      const order = rep % 2 ? [...VARIANTS].reverse() : VARIANTS;
      for (const v of order) {
        makeFile(path, size); // fresh and sparse for every run
        const b = await BlockBackend.open(path, v.options);
        try {
          const r = await runWorkload(b, { name: '4k-randwrite-qd32', rw: 'randwrite', bs: 4096, iodepth: 32 }, args.runtimeSec);
          const a = b.counters.snapshot().allocation;
          const s = { iops: r.iops, p99Us: r.p99Us, stallMaxUs: r.submitStallMaxUs, poolWrites: a.poolWrites, misses: a.misses };
          samples.set(v.name, [...(samples.get(v.name) ?? []), s]);
          console.log(
            `${v.name}: ${fmt(s.iops, 0)} IOPS, p99 ${fmt(s.p99Us, 0)} µs, io_submit max ${fmt(s.stallMaxUs, 0)} µs, pool writes ${s.poolWrites}, misses ${s.misses}`,
          );
        } finally {
          await b.close();
        }
      }
    }
  } finally {
    dir.cleanup();
  }
  const machine = machineInfo();
  const m = (
    k: string,
    f: (x: { iops: number; p99Us: number; stallMaxUs: number; poolWrites: number; misses: number }) => number,
  ): number => median((samples.get(k) ?? []).map(f));
  const md = [
    '# Allocation-aware native: the allocation chunk',
    '',
    `4k random writes QD32 on a fresh sparse ${size / MiB} MiB file in the tmpdir, through the engine; medians of ${args.reps} alternating run(s) of ${args.runtimeSec} s${args.quick ? ' (--quick: a smoke run)' : ''}.`,
    `Machine: ${machine.cpus as number} × ${machine.cpu as string}, kernel ${machine.kernel as string}, load at start ${(machine.loadavgAtStart as number[]).map((x) => x.toFixed(2)).join(' ')}. Wall time ${Math.round((Date.now() - started) / 1000)} s.`,
    '',
    markdownTable(
      ['mode', 'IOPS', 'p99 µs', 'longest io_submit µs', 'pool writes', 'misses'],
      VARIANTS.map((v) => [
        v.name,
        fmt(
          m(v.name, (x) => x.iops),
          0,
        ),
        fmt(
          m(v.name, (x) => x.p99Us),
          0,
        ),
        fmt(
          m(v.name, (x) => x.stallMaxUs),
          0,
        ),
        fmt(
          m(v.name, (x) => x.poolWrites),
          0,
        ),
        fmt(
          m(v.name, (x) => x.misses),
          0,
        ),
      ]),
    ),
  ].join('\n');
  const files = saveResults('alloc-chunk', { machine, args, sizeBytes: size, samples: Object.fromEntries(samples) }, md);
  console.log(`\n${md}\n\nwritten: ${files.filter((f) => !f.includes('-latest')).join(', ')}`);
}

main().catch((err: unknown) => {
  console.error(`bench alloc-chunk: ${(err as Error).message}`);
  process.exit(1);
});
