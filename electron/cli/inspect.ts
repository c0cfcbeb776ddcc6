// spindle inspect PATH [--json] [--probe]
import type { Command } from './main.js';
import { SpindleError } from '../shared/errors.js';
import { inspect, type Inspection } from '../host/advisor/advisor.js';
import { formatSize } from '../shared/size.js';
import { FORMAT_NAMES } from '../dataplane/block/format-detect.js';
import { parseCommandArgs } from './args.js';

const usage = 'spindle inspect PATH [--json] [--probe]';

const pct = (r: number | null) => (r === null ? 'n/a' : `${Math.round(r * 100)}%`);

/** "no", or "yes: written by qemu-io (pid 12)", naming every user found. */
function inUse(i: Inspection): string {
  if (!i.inUse) return 'no';
  const u = i.imageUse;
  const who = [
    ...(u.writers.length ? [`written by ${u.writers.join(', ')}`] : []),
    ...(u.readers.length ? [`read by ${u.readers.join(', ')}`] : []),
    ...u.loops.map((l) => `backs ${l.device}${l.mountpoints.length ? ` (mounted at ${l.mountpoints.join(', ')})` : ''}`),
    ...(i.usage?.mountpoints.length ? [`mounted at ${i.usage.mountpoints.join(', ')}`] : []),
  ];
  return who.length ? `yes: ${who.join('; ')}` : 'yes (see below)';
}

export function formatInspection(i: Inspection): string {
  const lines = [
    `${i.path}: ${i.kind === 'block' ? 'host block device' : 'image file'}, ${formatSize(i.sizeBytes)}${i.filesystem ? ` on ${i.filesystem}` : ''}`,
  ];
  const row = (k: string, v: string) => lines.push(`  ${k.padEnd(20)}${v}`);
  row('logical block size', i.logicalBlockSize ? `${i.logicalBlockSize} bytes` : 'unknown');
  if (i.allocation) {
    const a = i.allocation;
    row('allocation', i.sparse ? `sparse: ${formatSize(a.holeBytes)} in ${a.holeCount} hole(s)` : 'fully allocated');
    if (a.unwrittenBytes) row('unwritten extents', `${a.unwrittenExtents} (${formatSize(a.unwrittenBytes)})`);
  }
  row(
    'format',
    i.format === 'raw' || i.format === 'qcow2' ? i.format : `${FORMAT_NAMES[i.format]} (not served: convert it with spindle import)`,
  );
  if (i.image) {
    const m = i.image;
    row('virtual size', `${formatSize(m.virtualSizeBytes)} (${m.virtualSizeBytes} bytes)`);
    if (m.allocatedBytes !== null) row('allocated', formatSize(m.allocatedBytes));
    if (m.clusterSizeBytes !== null) row('cluster size', formatSize(m.clusterSizeBytes));
    if (m.format === 'qcow2') {
      row('backing chain', m.backingChain.length ? m.backingChain.map((b) => `${b.path} (${b.format})`).join(' <- ') : 'none');
      if (m.dirty || m.corrupt) row('state', [m.dirty ? 'dirty' : '', m.corrupt ? 'corrupt' : ''].filter(Boolean).join(', '));
    }
  }
  row('O_DIRECT', i.directIo ? 'supported' : 'not supported');
  row('in use', inUse(i));
  row('safe for native', i.safeForNative ? 'yes' : 'no');
  row('recommended', `aio ${i.recommended.aio}, cache ${i.recommended.cache}, nowait ${i.recommended.nowait ? 'on' : 'off'}`);
  if (i.probe && 'skipped' in i.probe) row('probe', i.probe.skipped);
  else if (i.probe) {
    const p = i.probe;
    row('probe', p.verdict.summary);
    row(
      '  nowait writes',
      `sparse ${pct(p.nowaitWrites.sparse)}, fallocated ${pct(p.nowaitWrites.fallocated)}, written ${pct(p.nowaitWrites.written)} honoured`,
    );
    row(
      '  nowait reads',
      `sparse ${pct(p.nowaitReads.sparse)}, fallocated ${pct(p.nowaitReads.fallocated)}, written ${pct(p.nowaitReads.written)} honoured`,
    );
    const sw = (v: number | null) => (v === null ? 'n/a' : v.toFixed(2));
    row(
      '  switches/submit',
      `sparse ${sw(p.submitSwitchesPerIo.sparse)}, fallocated ${sw(p.submitSwitchesPerIo.fallocated)}, written ${sw(p.submitSwitchesPerIo.written)}`,
    );
  }
  lines.push('', ...i.reasons.map((r) => `  - ${r}`));
  return lines.join('\n');
}

const command: Command = {
  summary:
    'Inspect an image file or host block device and recommend aio and cache modes; --probe measures RWF_NOWAIT on a temporary file beside it.',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, { json: { type: 'boolean' }, probe: { type: 'boolean' } }, usage);
    if (positionals.length !== 1)
      throw new SpindleError('INVALID_ARGUMENT', `${positionals.length ? 'Give exactly one PATH' : 'Missing PATH'}. Usage: ${usage}`);
    const result = await inspect(positionals[0]!, { probe: values.probe === true });
    console.log(values.json ? JSON.stringify(result, null, 2) : formatInspection(result));
    return 0;
  },
};
export default command;
