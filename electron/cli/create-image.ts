// spindle create-image PATH --size 10G [--preallocate] [--json]
import type { Command } from './main.js';
import { SpindleError } from '../shared/errors.js';
import { checkImageSize, createImage } from '../host/images/create-image.js';
import { formatSize, parseSize } from '../shared/size.js';
import { parseCommandArgs } from './args.js';

const usage = 'spindle create-image PATH --size SIZE [--preallocate] [--json]';

const command: Command = {
  summary: 'Create a raw disk image, sparse or preallocated. SIZE takes K, M, G, T (1024-based) or bytes, a multiple of 512.',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      { size: { type: 'string' }, preallocate: { type: 'boolean' }, json: { type: 'boolean' } },
      usage,
    );
    if (positionals.length !== 1)
      throw new SpindleError('INVALID_ARGUMENT', `${positionals.length ? 'Give exactly one PATH' : 'Missing PATH'}. Usage: ${usage}`);
    if (values.size === undefined) throw new SpindleError('INVALID_ARGUMENT', `Missing --size (for example --size 10G). Usage: ${usage}`);
    const size = parseSize(values.size);
    try {
      checkImageSize(size);
    } catch (err) {
      throw new SpindleError('INVALID_ARGUMENT', (err as Error).message);
    }
    const made = createImage(positionals[0]!, size, { preallocate: values.preallocate === true });
    if (values.json) console.log(JSON.stringify(made));
    else
      console.log(
        `created ${made.path}: ${formatSize(made.sizeBytes)} raw, ${made.method === 'sparse' ? 'sparse' : `preallocated (${made.method})`}`,
      );
    return 0;
  },
};
export default command;
