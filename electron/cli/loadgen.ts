// `spindle loadgen`: the command line of the load generator in tools/loadgen.ts.
import { parseArgs } from 'node:util';
import type { Command } from './main.js';
import { SpindleError } from '../shared/errors.js';
import { parseSize } from '../shared/size.js';
import { DEFAULT_TIMEOUT_SEC, MAX_IODEPTH, MAX_RING, runLoadgen, type LoadgenOptions, type LoadgenResult } from '../tools/loadgen.js';
import { RW_MODES, type RwMode } from '../tools/workload.js';

/** The size grammar of shared/size.ts, with the option named in its sentence. */
function parseSizeArg(text: string, what: string): number {
  try {
    return parseSize(text);
  } catch (err) {
    if (err instanceof SpindleError) throw new SpindleError(err.code, `${what} ${err.message}`);
    throw err;
  }
}

function parseIntArg(text: string | undefined, what: string, min: number, max: number, dflt: number): number {
  if (text === undefined) return dflt;
  const v = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new SpindleError('INVALID_ARGUMENT', `${what} must be a whole number from ${min} to ${max}, not '${text}'.`);
  }
  return v;
}

export function parseLoadgenArgs(argv: string[]): LoadgenOptions & { json: boolean } {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      socket: { type: 'string' },
      rw: { type: 'string', default: 'randread' },
      bs: { type: 'string', default: '4k' },
      iodepth: { type: 'string' },
      queues: { type: 'string' },
      runtime: { type: 'string' },
      size: { type: 'string' },
      verify: { type: 'boolean', default: false },
      'verify-only': { type: 'boolean', default: false },
      rwmixread: { type: 'string' },
      seed: { type: 'string' },
      timeout: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (!v.socket) throw new SpindleError('INVALID_ARGUMENT', '--socket is required: the vhost-user-blk socket to drive.');
  if (!(RW_MODES as readonly string[]).includes(v.rw!)) {
    throw new SpindleError('INVALID_ARGUMENT', `--rw must be one of ${RW_MODES.join(', ')}, not '${v.rw}'.`);
  }
  const bs = parseSizeArg(v.bs!, '--bs');
  if (bs < 512 || bs % 512 !== 0 || bs > 16 << 20) {
    throw new SpindleError('INVALID_ARGUMENT', `--bs must be a multiple of 512 bytes up to 16M, not '${v.bs}'.`);
  }
  const iodepth = parseIntArg(v.iodepth, '--iodepth', 1, MAX_IODEPTH, 32);
  let ring = 8;
  while (ring < 3 * iodepth) ring *= 2;
  if (ring > MAX_RING) throw new SpindleError('INVALID_ARGUMENT', `--iodepth ${iodepth} needs a ring larger than ${MAX_RING}.`);
  const runtime = v.runtime === undefined ? 10 : Number(v.runtime);
  if (!(runtime > 0 && runtime <= 86400))
    throw new SpindleError('INVALID_ARGUMENT', `--runtime must be seconds between 0 and 86400, not '${v.runtime}'.`);
  const timeout = v.timeout === undefined ? DEFAULT_TIMEOUT_SEC : Number(v.timeout);
  if (!(timeout > 0 && timeout <= 3600))
    throw new SpindleError('INVALID_ARGUMENT', `--timeout must be seconds between 0 and 3600, not '${v.timeout}'.`);
  const size = v.size === undefined ? 0 : parseSizeArg(v.size, '--size');
  if (v.size !== undefined && size < bs)
    throw new SpindleError('INVALID_ARGUMENT', `--size ${v.size} is smaller than one block (--bs ${v.bs}).`);
  return {
    socket: v.socket,
    rw: v.rw as RwMode,
    bs,
    iodepth,
    queues: parseIntArg(v.queues, '--queues', 1, 64, 1),
    runtimeSec: runtime,
    size,
    verify: v.verify!,
    verifyOnly: v['verify-only']!,
    rwmixread: parseIntArg(v.rwmixread, '--rwmixread', 0, 100, 50),
    seed: parseIntArg(v.seed, '--seed', 0, 0xffffffff, 1),
    timeoutSec: timeout,
    json: v.json!,
  };
}

export function formatResult(r: LoadgenResult): string {
  const lines = [
    `loadgen: rw=${r.rw} bs=${r.bs} iodepth=${r.iodepth} queues=${r.queues} region=${r.sizeBytes} bytes, ${r.runtimeSec} s`,
    `  ios=${r.ios} (reads ${r.reads}, writes ${r.writes})  errors=${r.errors}`,
    `  IOPS=${r.iops}  MB/s=${r.mbps}  latency p50=${r.latencyUs.p50} us  p99=${r.latencyUs.p99} us  mean=${r.latencyUs.mean} us  max=${r.latencyUs.max} us`,
    `  driver CPU ${r.driverCpuSec} s (${Math.round((r.driverCpuSec / r.runtimeSec) * 100)}% of one core)`,
  ];
  if (r.verify) {
    lines.push(
      r.verify.mismatches === 0
        ? `  verify: ${r.verify.blocks} blocks read back, all match the pattern`
        : `  verify: ${r.verify.mismatches} of ${r.verify.blocks} blocks do not match (first at byte offset ${r.verify.firstMismatchOffset})`,
    );
  }
  return lines.join('\n');
}

const command: Command = {
  summary: 'Drive a vhost-user-blk backend the way a guest would, and report IOPS, MB/s, latency and errors.',
  usage:
    'spindle loadgen --socket SOCK [--rw randread|randwrite|read|write|randrw] [--bs 4k] [--iodepth 32] ' +
    '[--queues N] [--runtime S] [--size BYTES] [--verify | --verify-only] [--rwmixread PCT] [--seed N] [--timeout S] [--json]\n' +
    '  --verify writes a pattern (from --seed) over the region, reads it back and fails on any mismatch;\n' +
    '  --verify-only skips the writing and checks what an earlier --verify run with the same seed, bs and size left;\n' +
    `  --timeout S (default ${DEFAULT_TIMEOUT_SEC}) gives up on a backend that does not answer a message, or completes nothing, for S seconds.`,
  async run(argv) {
    const { json, ...opts } = parseLoadgenArgs(argv);
    const r = await runLoadgen(opts);
    console.log(json ? JSON.stringify(r) : formatResult(r));
    return r.errors > 0 || (r.verify !== null && r.verify.mismatches > 0) ? 1 : 0;
  },
};

export default command;
