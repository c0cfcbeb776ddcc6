// The states a running VM goes through and the only moves between them. Every change of a
// RunningVm's state goes through transition(), so a move the table does not list is a bug in
// Spindle (an internal error), never a silent overwrite.
import type { VmState } from '../../shared/api.js';
import { SpindleError } from '../../shared/errors.js';

/** Allowed moves, from → to. 'stopped' and 'crashed' are where a QEMU that exited ends. */
export const VM_TRANSITIONS: Readonly<Record<VmState, readonly VmState[]>> = {
  // QEMU continued (launch, or a RESUME event); the guest powered off while booting.
  starting: ['running', 'shutting-down', 'stopped', 'crashed'],
  running: ['paused', 'shutting-down', 'stopped', 'crashed'],
  paused: ['running', 'shutting-down', 'stopped', 'crashed'],
  // A second shutdown request while the first one waits stays 'shutting-down'.
  'shutting-down': ['shutting-down', 'stopped', 'crashed'],
  stopped: [],
  crashed: [],
};

export function canTransition(from: VmState, to: VmState): boolean {
  return VM_TRANSITIONS[from].includes(to);
}

/** The state after moving `from` → `to`; throws INTERNAL for a move the table does not allow. */
export function checkedTransition(from: VmState, to: VmState, vmName: string): VmState {
  if (!canTransition(from, to)) throw new SpindleError('INTERNAL', `VM '${vmName}' cannot go from '${from}' to '${to}'.`);
  return to;
}
