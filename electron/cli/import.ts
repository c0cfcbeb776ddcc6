// spindle import SRC DEST [--format raw|qcow2] [--json]: another hypervisor's disk (vmdk, vdi,
// vhdx, vhd, qcow2) or a raw image, converted by qemu-img into a new image Spindle serves.
import { resolve as resolvePath } from 'node:path';
import type { Command } from './main.js';
import { SpindleError } from '../shared/errors.js';
import { FORMAT_NAMES } from '../dataplane/block/format-detect.js';
import { importImage } from '../host/images/import-image.js';

const usage = 'spindle import SRC DEST [--format raw|qcow2] [--json]';

const command: Command = {
  summary:
    'Convert a vmdk, vdi, vhdx, vhd, qcow2 or raw image into a new raw (default: the fastest path, sparse on the host) or qcow2 image with qemu-img, showing progress. Never overwrites DEST.',
  usage,
  async run(argv) {
    const { parseCommandArgs } = await import('./args.js');
    const { values, positionals } = parseCommandArgs(argv, { format: { type: 'string' }, json: { type: 'boolean' } }, usage);
    if (positionals.length !== 2)
      throw new SpindleError('INVALID_ARGUMENT', `Give the image to import and the new image's path. Usage: ${usage}`);
    const format = values.format ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') throw new SpindleError('INVALID_ARGUMENT', `--format takes raw or qcow2, not '${format}'.`);
    const [src, dest] = positionals.map((p) => resolvePath(p)) as [string, string];
    const tty = process.stderr.isTTY && !values.json;
    let shown = -1;
    const done = await importImage(src, dest, format, (pct) => {
      const whole = Math.floor(pct);
      if (whole === shown || values.json) return;
      shown = whole;
      // One line that updates in place on a terminal; one line per 10% otherwise (logs).
      if (tty) process.stderr.write(`\rimporting ${src}: ${whole}%`);
      else if (whole % 10 === 0) process.stderr.write(`importing ${src}: ${whole}%\n`);
    });
    if (tty) process.stderr.write('\n');
    const from = done.sourceFormat === 'raw' ? 'raw' : FORMAT_NAMES[done.sourceFormat];
    if (values.json) console.log(JSON.stringify(done));
    else console.log(`imported ${done.source} (${from}) as ${done.path} (${done.format})`);
    return 0;
  },
};
export default command;
