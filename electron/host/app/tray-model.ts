// What the tray icon's menu shows, from the VM list: pure data, so it is tested in Node; main.ts
// turns it into an Electron Menu (the only part that needs Electron's binary).
import type { VmInfo, VmState } from '../../shared/api.js';

export type TrayAction = 'show' | 'quit';

export type TrayItem =
  | { kind: 'vm'; vmId: string; label: string; state: VmState }
  | { kind: 'separator' }
  | { kind: 'action'; action: TrayAction; label: string };

export interface TrayModel {
  /** The icon's hover text: how many VMs run. */
  tooltip: string;
  items: TrayItem[];
}

const STATE_WORDS: Record<VmState, string> = {
  stopped: 'stopped',
  starting: 'starting',
  running: 'running',
  paused: 'paused',
  'shutting-down': 'shutting down',
  crashed: 'crashed',
};

/** A VM counts as live (keeps the app alive) from starting until it is stopped or crashed. */
export function isLive(state: VmState): boolean {
  return state !== 'stopped' && state !== 'crashed';
}

/** One line per VM ("demo — running"), live VMs first, then "Show Spindle" and "Quit". */
export function trayModel(vms: readonly VmInfo[]): TrayModel {
  const live = vms.filter((v) => isLive(v.state)).length;
  const sorted = [...vms].sort((a, b) => Number(isLive(b.state)) - Number(isLive(a.state)) || a.config.name.localeCompare(b.config.name));
  const items: TrayItem[] = sorted.map((v) => ({
    kind: 'vm',
    vmId: v.config.id,
    state: v.state,
    label: `${v.config.name} — ${v.runningElsewhere ? 'running in another Spindle process' : STATE_WORDS[v.state]}`,
  }));
  if (!vms.length) items.push({ kind: 'vm', vmId: '', state: 'stopped', label: 'No VMs yet' });
  items.push(
    { kind: 'separator' },
    { kind: 'action', action: 'show', label: 'Show Spindle' },
    { kind: 'action', action: 'quit', label: 'Quit' },
  );
  const tooltip = live === 0 ? 'Spindle: no VM running' : `Spindle: ${live} VM${live === 1 ? '' : 's'} running`;
  return { tooltip, items };
}
