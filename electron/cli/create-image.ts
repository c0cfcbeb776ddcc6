// spindle create-image PATH --size 10G [--format raw|qcow2] [--cluster-size N] [--preallocate off|metadata|falloc|full] [--backing FILE] [--json]
import { resolve as resolvePath } from 'node:path';
import type { Command } from './main.js';
import { SpindleError } from '../shared/errors.js';
import { createDiskImage, type Preallocation } from '../host/images/create-image.js';
import { formatSize, parseSize } from '../shared/size.js';
import { parseCommandArgs } from './args.js';

const usage =
  'spindle create-image PATH --size SIZE [--format raw|qcow2] [--cluster-size N] [--preallocate off|metadata|falloc|full] [--backing FILE] [--json]';

/** `--preallocate` with no value (last, or before another option: the flag before it took one)
 *  still means falloc. */
function preallocateFlag(argv: string[]): string[] {
  return argv.map((a, i) => (a === '--preallocate' && (argv[i + 1] ?? '--').startsWith('--') ? '--preallocate=falloc' : a));
}

const command: Command = {
  summary:
    'Create a disk image: raw (the default; sparse or preallocated) or qcow2 (through qemu-img, optionally over a backing file). SIZE takes K, M, G, T (1024-based) or bytes, a multiple of 512.',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      preallocateFlag(argv),
      {
        size: { type: 'string' },
        format: { type: 'string' },
        'cluster-size': { type: 'string' },
        preallocate: { type: 'string' },
        backing: { type: 'string' },
        json: { type: 'boolean' },
      },
      usage,
    );
    if (positionals.length !== 1)
      throw new SpindleError('INVALID_ARGUMENT', `${positionals.length ? 'Give exactly one PATH' : 'Missing PATH'}. Usage: ${usage}`);
    const format = values.format ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') throw new SpindleError('INVALID_ARGUMENT', `--format takes raw or qcow2, not '${format}'.`);
    if (values.size === undefined && values.backing === undefined)
      throw new SpindleError('INVALID_ARGUMENT', `Missing --size (for example --size 10G). Usage: ${usage}`);
    const made = await createDiskImage({
      path: resolvePath(positionals[0]!),
      format,
      ...(values.size !== undefined ? { sizeBytes: parseSize(values.size) } : {}),
      ...(values['cluster-size'] !== undefined ? { clusterSize: parseSize(values['cluster-size']) } : {}),
      ...(values.preallocate !== undefined ? { preallocate: values.preallocate as Preallocation } : {}),
      ...(values.backing !== undefined ? { backing: resolvePath(values.backing) } : {}),
    });
    if (values.json) console.log(JSON.stringify({ ...made, preallocated: made.preallocate !== 'off' }));
    else {
      const how = made.preallocate === 'off' ? 'sparse' : `preallocated (${made.preallocate})`;
      const extra = made.format === 'qcow2' ? `, clusters of ${formatSize(made.clusterSize ?? 65536)}` : '';
      const over = made.backing ? `, over ${made.backing.path} (${made.backing.format})` : '';
      console.log(`created ${made.path}: ${formatSize(made.sizeBytes)} ${made.format}, ${how}${extra}${over}`);
    }
    return 0;
  },
};
export default command;
