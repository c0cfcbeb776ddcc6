// `spindle bench-engines PATH`: a short matrix per engine (threads, native, native+nowait,
// io_uring): 4k random read/write QD32, 1M sequential read/write QD4.
import { parseArgs } from 'node:util';
import type { Command } from './main.js';
import { SpindleError } from '../shared/errors.js';
import { BlockBackend } from '../dataplane/block/backend.js';
import { ImageLock } from '../dataplane/block/image-lock.js';
import { ENGINE_VARIANTS, variantName, type CacheMode } from '../shared/modes.js';
import { STANDARD_WORKLOADS, runWorkload, type WorkloadResult } from '../tools/engine-workload.js';

const command: Command = {
  summary: 'Measure each I/O engine on a file or block device (overwrites its data).',
  usage: 'spindle bench-engines PATH --overwrite [--json] [--runtime SECONDS] [--cache none|writeback]',
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean' },
        runtime: { type: 'string', default: '5' },
        overwrite: { type: 'boolean' },
        cache: { type: 'string', default: 'none' },
      },
    });
    const path = positionals[0];
    if (!path || positionals.length > 1) throw new SpindleError('INVALID_ARGUMENT', `expected one PATH.\nusage: ${command.usage}`);
    const runtime = Number(values.runtime);
    if (!Number.isFinite(runtime) || runtime <= 0 || runtime > 600)
      throw new SpindleError('INVALID_ARGUMENT', `--runtime must be a number of seconds between 0 and 600, not '${values.runtime}'.`);
    if (values.cache !== 'none' && values.cache !== 'writeback')
      throw new SpindleError('INVALID_ARGUMENT', `--cache must be 'none' or 'writeback'.`);
    if (!values.overwrite)
      throw new SpindleError('INVALID_ARGUMENT', `bench-engines writes over the data in ${path}; pass --overwrite to confirm.`);
    // Opening first refuses a missing path, a mounted or held device (O_EXCL), a non-raw image,
    // an image another program uses (QEMU's image locks), and so on.
    await (await BlockBackend.open(path, { cache: 'writeback' })).close();
    // One lock for the whole run, so nobody starts writing the image between two engines.
    const lock = ImageLock.acquire(path, { write: true });
    const results: Array<{ engine: string } & WorkloadResult> = [];
    const skipped: Array<{ engine: string; reason: string }> = [];
    try {
      for (const { aio, nowait } of ENGINE_VARIANTS) {
        const v = { label: variantName({ aio, nowait }), aio, nowait: nowait ? ('on' as const) : ('off' as const) };
        const cache = values.cache as CacheMode;
        let b: BlockBackend;
        try {
          b = await BlockBackend.open(path, { aio: v.aio, cache, nowait: v.nowait, lock });
        } catch (err) {
          if (err instanceof SpindleError && err.code === 'UNSUPPORTED_MODE') {
            skipped.push({ engine: v.label, reason: err.message });
            continue;
          }
          throw err;
        }
        try {
          for (const w of STANDARD_WORKLOADS) results.push({ engine: v.label, ...(await runWorkload(b, w, runtime)) });
        } finally {
          await b.close();
        }
      }
    } finally {
      lock.release();
    }
    if (values.json) {
      console.log(JSON.stringify({ path, cache: values.cache, runtimeSeconds: runtime, results, skipped }, null, 2));
      return 0;
    }
    const rows = [['engine', 'workload', 'IOPS', 'MB/s', 'p99 µs', 'CPU s', 'fallbacks']];
    for (const r of results)
      rows.push([
        r.engine,
        r.workload,
        r.iops.toFixed(0),
        r.mbPerSec.toFixed(1),
        String(r.p99Us),
        r.cpuSeconds.toFixed(2),
        String(r.nowaitFallbacks),
      ]);
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) console.log(r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
    for (const s of skipped) console.log(`${s.engine}: skipped: ${s.reason}`);
    return 0;
  },
};

export default command;
