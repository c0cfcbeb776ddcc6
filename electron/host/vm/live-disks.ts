// Work on a running VM's disk images with Spindle's hands off them: each disk server drains (no
// request in flight), closes its image (DiskServer.detach: no fd, no lock) while the guest's new
// requests wait in its queues, `fn` runs (qemu-img snapshot), and each disk reopens on its own
// socket (reattach), QEMU reconnecting as after a backend restart; the guest sees its disks
// stall for that instant, no error. The guest's vCPUs are not stopped over QMP: QEMU before 9.1
// does not talk to a vhost-user backend that reconnects while the VM is stopped (its I/O would
// stay stuck), so a VM the user paused is refused. Disks detach one after the other: each stops
// completing requests from its drain on, so the set written is one a power cut could leave
// (crash-consistent; no application-level consistency without a guest agent).
import { SpindleError } from '../../shared/errors.js';
import type { DiskHost } from './disk-host.js';

export interface LiveVmDisks {
  readonly state: string;
  readonly name: string;
  host(diskId: string): DiskHost | undefined;
}

type Detachable = DiskHost & Required<Pick<DiskHost, 'detach' | 'reattach'>>;

export async function withDisksReleased<T>(vm: LiveVmDisks, diskIds: readonly string[], fn: () => Promise<T>): Promise<T> {
  if (vm.state !== 'running')
    throw new SpindleError(
      'CONFLICT',
      `VM '${vm.name}' is ${vm.state}; resume it or shut it down first (QEMU before 9.1 does not reconnect a disk while the VM is paused).`,
    );
  const hosts = diskIds.map((id) => {
    const h = vm.host(id);
    if (!h?.detach || !h.reattach)
      throw new SpindleError('CONFLICT', `Disk ${id} of '${vm.name}' is not being served right now, so it cannot be released.`);
    return h as Detachable;
  });
  const detached: Detachable[] = [];
  try {
    for (const h of hosts) {
      await h.detach();
      detached.push(h);
    }
    return await fn();
  } finally {
    for (const h of detached) await h.reattach();
  }
}
