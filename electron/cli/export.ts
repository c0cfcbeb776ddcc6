// `spindle export PATH --socket SOCK …`: serves one disk over vhost-user-blk in the foreground,
// Spindle's answer to `qemu-storage-daemon --export type=vhost-user-blk`. Usable with any QEMU:
//   -object memory-backend-memfd,id=mem,size=…,share=on -numa node,memdev=mem
//   -chardev socket,id=d0,path=SOCK -device vhost-user-blk-pci,chardev=d0
import { parseArgs } from 'node:util';
import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import type { Command } from './main.js';
import { SpindleError, errnoOf } from '../shared/errors.js';
import {
  AIO_MODES,
  CACHE_MODES,
  NOWAIT_MODES,
  defaultModes,
  isAioMode,
  isCacheMode,
  modeConflict,
  type AioMode,
  type CacheMode,
  type NowaitMode,
} from '../shared/modes.js';
import { DiskServer, type DiskEvent, type DiskSpec } from '../host/disks/disk-server.js';
import { ENOSPC_POLICIES, type EnospcPolicy } from '../shared/modes.js';
import { formatSize, parseSize as parseSizeText } from '../shared/size.js';
import { checkFormat } from '../dataplane/format/open-format.js';
import { servableFormat } from '../dataplane/block/format-detect.js';

/** Whether --format was given; export prints what it detected otherwise. */
let detected: string | null = null;

function servableFormatOf(path: string): 'raw' | 'qcow2' {
  try {
    const f = servableFormat(path);
    detected = f;
    return f;
  } catch (err) {
    if (err instanceof SpindleError) throw err;
    throw new SpindleError('IO_ERROR', `Cannot read the header of ${path}: ${(err as Error).message}`, errnoOf(err));
  }
}

function parseSize(text: string, what: string): number {
  try {
    return parseSizeText(text);
  } catch (err) {
    throw invalid(`${what}: ${(err as Error).message}`);
  }
}

const USAGE =
  'spindle export PATH --socket SOCK [--format raw|qcow2] [--l2-cache SIZE] [--aio threads|native|io_uring] [--cache writeback|none|writethrough|directsync|unsafe] [--nowait on|off|auto] [--queues N] [--read-only] [--serial ID] [--enospc stop|report]';
const MAX_QUEUES = 256;
const MAX_SERIAL_BYTES = 20;

const invalid = (sentence: string): SpindleError => new SpindleError('INVALID_ARGUMENT', sentence);

/** The disk spec from the command line; modes not given follow the advisor's defaults for the disk's kind. */
export function parseExportArgs(argv: string[]): DiskSpec {
  const { values: v, positionals } = parseArgs({
    args: argv,
    options: {
      socket: { type: 'string' },
      aio: { type: 'string' },
      cache: { type: 'string' },
      nowait: { type: 'string' },
      queues: { type: 'string' },
      'read-only': { type: 'boolean', default: false },
      serial: { type: 'string' },
      enospc: { type: 'string' },
      format: { type: 'string' },
      'l2-cache': { type: 'string' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw invalid(`give exactly one disk (an image file or a block device); got ${positionals.length}.`);
  if (!v.socket) throw invalid('--socket is required: the unix socket path QEMU will connect to.');
  if (v.aio !== undefined && !isAioMode(v.aio)) throw invalid(`--aio must be one of ${AIO_MODES.join(', ')}, not '${v.aio}'.`);
  if (v.cache !== undefined && !isCacheMode(v.cache)) throw invalid(`--cache must be one of ${CACHE_MODES.join(', ')}, not '${v.cache}'.`);
  if (v.nowait !== undefined && !(NOWAIT_MODES as readonly string[]).includes(v.nowait))
    throw invalid(`--nowait must be one of ${NOWAIT_MODES.join(', ')}, not '${v.nowait}'.`);
  let queues = Math.min(availableParallelism(), MAX_QUEUES);
  if (v.queues !== undefined) {
    queues = Number(v.queues);
    if (!/^\d+$/.test(v.queues) || queues < 1 || queues > MAX_QUEUES)
      throw invalid(`--queues must be a whole number from 1 to ${MAX_QUEUES}, not '${v.queues}'.`);
  }
  if (v.enospc !== undefined && !(ENOSPC_POLICIES as readonly string[]).includes(v.enospc)) {
    throw invalid(
      `--enospc must be 'stop' (hold writes that find the filesystem full until space is freed) or 'report' (give the guest an I/O error), not '${v.enospc}'.`,
    );
  }
  const serial = v.serial ?? '';
  if (Buffer.byteLength(serial) > MAX_SERIAL_BYTES)
    throw invalid(`--serial is at most ${MAX_SERIAL_BYTES} bytes (virtio-blk GET_ID), '${serial}' is ${Buffer.byteLength(serial)}.`);

  const path = resolve(positionals[0]!);
  let kind: 'file' | 'block';
  try {
    const st = statSync(path);
    if (st.isBlockDevice()) kind = 'block';
    else if (st.isFile()) kind = 'file';
    else throw new SpindleError('NOT_A_DISK', `${path} is neither an image file nor a block device.`);
  } catch (err) {
    if (err instanceof SpindleError) throw err;
    const errno = errnoOf(err);
    if (errno === 'ENOENT') throw new SpindleError('NOT_FOUND', `${path} does not exist.`, errno);
    throw new SpindleError('IO_ERROR', `Cannot look at ${path}: ${(err as Error).message}`, errno);
  }
  const { aio, cache } = chooseModes(kind, v.aio as AioMode | undefined, v.cache as CacheMode | undefined);
  // Given: never probed (a raw disk whose guest wrote a qcow2 header stays raw). Absent: detected.
  const format = v.format !== undefined ? checkFormat(v.format, '--format') : servableFormatOf(path);
  let l2CacheBytes: number | undefined;
  if (v['l2-cache'] !== undefined) {
    if (format !== 'qcow2') throw invalid('--l2-cache is for qcow2 disks only.');
    l2CacheBytes = parseSize(v['l2-cache'], '--l2-cache');
  }
  return {
    path,
    format,
    ...(l2CacheBytes ? { l2CacheBytes } : {}),
    socketPath: resolve(v.socket),
    aio,
    cache,
    nowait: (v.nowait ?? 'auto') as NowaitMode,
    readOnly: v['read-only']!,
    queues,
    serial,
    enospc: (v.enospc ?? 'stop') as EnospcPolicy,
  };
}

/** Fills in what was not given so the pair works; refuses a pair given in full that cannot. */
export function chooseModes(kind: 'file' | 'block', aio?: AioMode, cache?: CacheMode): { aio: AioMode; cache: CacheMode } {
  const d = defaultModes(kind);
  if (aio && cache) {
    const conflict = modeConflict(aio, cache);
    if (conflict) throw invalid(conflict);
    return { aio, cache };
  }
  // Only one given: the other is the default unless that cannot go with it.
  if (aio) return { aio, cache: modeConflict(aio, d.cache) ? 'none' : d.cache };
  if (cache) return { aio: modeConflict(d.aio, cache) ? 'threads' : d.aio, cache };
  return d;
}

const command: Command = {
  summary: 'Serve one disk over vhost-user-blk in the foreground (like qemu-storage-daemon --export type=vhost-user-blk).',
  usage: USAGE,
  async run(argv: string[]): Promise<number> {
    detected = null;
    const spec = parseExportArgs(argv);
    const format = `${spec.format ?? 'raw'}${detected ? ' (detected; --format says it yourself)' : ''}`;
    const server = await DiskServer.start(spec);
    // The handlers are in place before `ready` is printed: a SIGTERM sent as soon as a script reads
    // it must drain and print stats, not kill the process with the default action.
    const stopped = new Promise<NodeJS.Signals | 'failed'>((done) => {
      process.once('SIGINT', done);
      process.once('SIGTERM', done);
      server.on('event', (e) => e.kind === 'failed' && done('failed'));
    });
    server.on('event', (e) => {
      const line = describeExportEvent(e, spec.path);
      if (line) console.error(line);
    });
    const m = server.currentModes;
    console.error(
      `spindle export: ${format} ${spec.path} (${server.kind}, ${server.sizeBytes} bytes), aio ${m.aio}, cache ${m.cache}, nowait ${m.nowait}, ${spec.queues} queue(s)${spec.readOnly ? ', read-only' : ''}, enospc ${spec.enospc}`,
    );
    console.log(`ready ${spec.socketPath}`);

    const signal = await stopped;
    process.removeAllListeners('SIGINT');
    process.removeAllListeners('SIGTERM');
    // Drains in-flight I/O, closes the socket and the disk.
    await server.stop();
    console.log(`stats ${JSON.stringify(server.statsSummary())}`);
    return signal === 'failed' ? 1 : 0;
  },
};

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** A disk event as a line on stderr (null: none). */
export function describeExportEvent(e: DiskEvent, path: string): string | null {
  switch (e.kind) {
    case 'log':
      return e.line;
    case 'broken':
      return `queue ${e.queue} stopped: ${e.reason}`;
    case 'nowait':
      return `nowait ${e.direction} ${e.enabled ? 'on' : 'off'}: ${e.reason}`;
    case 'failed':
      return `spindle export: ${e.reason}`;
    case 'resubmitted':
      return `queue ${e.queue}: resubmitted ${e.count} request(s) the previous server left in flight`;
    case 'restarting':
      return `spindle export: restarting the disk's I/O thread (attempt ${e.attempt}): ${e.reason}`;
    case 'restarted':
      return `spindle export: the disk's I/O thread serves again (${e.restarts} restart(s) so far)`;
    case 'no-space': {
      const needs =
        e.missingBytes === null
          ? ''
          : e.missingBytes > 0
            ? ` (needs ${formatSize(e.missingBytes)} more)`
            : ` (${formatSize(e.freeBytes ?? 0)} free)`;
      return e.retried
        ? `spindle export: retried the parked writes: ${path}'s filesystem is still full${needs}; ${plural(e.parked, 'write')} wait for space`
        : `spindle export: parked ${plural(e.parked, 'write')}: ${path}'s filesystem is full${needs} — waiting for space`;
    }
    case 'space-recovered':
      return e.dropped > 0
        ? `spindle export: the frontend went away or reset its ring: ${plural(e.dropped, 'parked write')} dropped (a reconnecting frontend resubmits them), ${e.completed} completed`
        : `spindle export: resumed: ${plural(e.completed, 'parked write')} completed after ${Math.round(e.waitedMs / 1000)} s, once space was freed on ${path}'s filesystem`;
    default:
      return null;
  }
}

export default command;
