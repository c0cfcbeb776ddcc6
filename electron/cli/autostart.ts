// `spindle autostart on|off|status [--json]`: "start Spindle at login", an XDG autostart entry
// written or removed on request (host/app/login-autostart.ts), through the running host when there is one.
import type { Command } from './main.js';
import { SpindleError } from '../shared/errors.js';
import type { LoginAutostart } from '../shared/api.js';
import { parseCommandArgs } from './args.js';
import { caller, print } from './vm.js';

const command: Command = {
  summary: 'Start Spindle at login (an XDG autostart entry), or stop doing so',
  usage: 'spindle autostart on|off|status [--json]',
  async run(argv) {
    const { values: o, positionals } = parseCommandArgs(argv, { json: { type: 'boolean' } }, 'autostart');
    const what = positionals[0] ?? 'status';
    if (!['on', 'off', 'status'].includes(what)) throw new SpindleError('INVALID_ARGUMENT', `Say on, off or status (not '${what}').`);
    const api = await caller(false);
    try {
      const r = (await (what === 'status'
        ? api.call('app.autostart.get', {})
        : api.call('app.autostart.set', { enabled: what === 'on' }))) as LoginAutostart;
      print(!!o.json, r, () =>
        r.enabled
          ? `Spindle starts at login: ${r.path} runs ${r.command ?? '(no command)'}`
          : `Spindle does not start at login (no ${r.path}).`,
      );
      return 0;
    } finally {
      await api.close();
    }
  },
};

export default command;
