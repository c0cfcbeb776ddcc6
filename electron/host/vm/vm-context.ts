// What the VM manager's parts share (manager.ts builds it once): the stores, the VMs this process
// runs, the disk leases, and how a part tells the manager's listeners that something changed.
// The parts (vm-changes.ts, vm-lifecycle.ts, disk-changes.ts) take no lock of their own: the
// manager calls each of them under the VM's lock (vm-lock.ts).
import type { DiskLeases } from '../disks/disk-leases.js';
import type { VmConfigService } from './config-service.js';
import type { RunLocks } from './run-lock.js';
import type { RunningVms } from './running-vms.js';
import type { VmStore } from './store.js';

/** The manager's events, per VM: 'vm' (changed, deleted), 'disk' (a log line), 'serial'. */
export interface ManagerEvents {
  /** Emits the VM's full info (nothing when it was deleted meanwhile). */
  changed(vmId: string): void;
  deleted(vmId: string): void;
  log(vmId: string, level: 'info' | 'warning' | 'error', message: string, diskId?: string): void;
  serial(vmId: string, data: Buffer): void;
}

export interface VmContext {
  readonly store: VmStore;
  readonly configs: VmConfigService;
  readonly runLocks: RunLocks;
  readonly vms: RunningVms;
  /** Which disk paths running VMs (and the aio comparison) use. */
  readonly leases: DiskLeases;
  readonly env: NodeJS.ProcessEnv;
  readonly events: ManagerEvents;
}
