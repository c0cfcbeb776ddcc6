// `spindle vm delete VM [--keep-disks]`, `spindle vm clone VM NEW [--linked]` and
// `spindle vm autostart VM on|off`: thin, through the same API as the app (host/vm/vm-files.ts,
// clone.ts and autostart-vms.ts do the work).
import { SpindleError } from '../shared/errors.js';
import type { Result, VmInfo } from '../shared/api.js';
import { parseCommandArgs } from './args.js';
import { caller, describe, print, resolveId } from './vm.js';

export default async function run(sub: string, argv: string[]): Promise<number> {
  const { values: o, positionals: args } = parseCommandArgs(
    argv,
    { json: { type: 'boolean' }, 'keep-disks': { type: 'boolean' }, linked: { type: 'boolean' } },
    'vm',
  );
  const json = !!o.json;
  if (o['keep-disks'] && sub !== 'delete') throw new SpindleError('INVALID_ARGUMENT', '--keep-disks goes with vm delete.');
  if (o.linked && sub !== 'clone') throw new SpindleError('INVALID_ARGUMENT', '--linked goes with vm clone.');
  const api = await caller(false);
  try {
    const id = await resolveId(api, args[0]);
    if (sub === 'delete') {
      const r = (await api.call('vm.delete', { id, deleteDisks: !o['keep-disks'] })) as Result<'vm.delete'>;
      print(json, r, () =>
        [
          `Deleted VM '${args[0]}'.`,
          ...r.deletedFiles.map((f) => `  removed ${f}`),
          ...r.keptFiles.map((k) => `  kept ${k.path}: ${k.reason}`),
        ].join('\n'),
      );
      return 0;
    }
    if (sub === 'clone') {
      if (!args[1]) throw new SpindleError('INVALID_ARGUMENT', 'Name the new VM: spindle vm clone VM NEW [--linked]');
      const vm = (await api.call('vm.clone', { id, name: args[1], linked: !!o.linked })) as VmInfo;
      print(json, vm, () => describe(vm));
      return 0;
    }
    // autostart
    const on = args[1];
    if (on !== 'on' && on !== 'off')
      throw new SpindleError('INVALID_ARGUMENT', `Say on or off: spindle vm autostart VM on|off (not '${on ?? ''}').`);
    const vm = (await api.call('vm.update', { id, patch: { autostart: on === 'on' } })) as VmInfo;
    print(json, vm, () => `'${vm.config.name}' ${vm.config.autostart ? 'starts' : 'does not start'} when Spindle starts.`);
    return 0;
  } finally {
    await api.close();
  }
}
