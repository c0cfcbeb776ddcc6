// `spindle vm snapshot VM create|list|revert|delete [NAME] [--json]`: internal qcow2 snapshots
// of every writable disk (host/vm/snapshots.ts; on a running VM through host/vm/live-disks.ts).
import { SpindleError } from '../shared/errors.js';
import { formatSize } from '../shared/size.js';
import type { SnapshotList } from '../shared/api.js';
import { parseCommandArgs } from './args.js';
import { caller, print, resolveId } from './vm.js';

const OPS = ['create', 'list', 'revert', 'delete'] as const;

export function formatSnapshots(list: SnapshotList): string {
  if (!list.snapshots.length) return 'No snapshots yet: spindle vm snapshot VM create NAME';
  return [
    ...list.snapshots.map((s) => `${s.name.padEnd(24)} ${s.date}  disks ${s.disks.join(',')}${s.complete ? '' : ' (not every disk)'}`),
    `images on the host: ${list.disks.map((d) => `${d.diskId} ${formatSize(d.imageBytes)}`).join(', ')}`,
  ].join('\n');
}

export default async function run(_sub: string, argv: string[]): Promise<number> {
  const { values: o, positionals: args } = parseCommandArgs(argv, { json: { type: 'boolean' } }, 'vm');
  const [vm, op, name] = args;
  if (!OPS.includes(op as (typeof OPS)[number]))
    throw new SpindleError(
      'INVALID_ARGUMENT',
      `Say what to do: spindle vm snapshot VM create|list|revert|delete [NAME] (not '${op ?? ''}').`,
    );
  if (op !== 'list' && !name) throw new SpindleError('INVALID_ARGUMENT', `Name the snapshot: spindle vm snapshot VM ${op} NAME`);
  const api = await caller(false);
  try {
    const id = await resolveId(api, vm);
    const list = (await api.call(`snapshot.${op}`, op === 'list' ? { id } : { id, name })) as SnapshotList;
    print(!!o.json, list, () => formatSnapshots(list));
    return 0;
  } finally {
    await api.close();
  }
}
