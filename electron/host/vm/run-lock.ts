// One process runs a VM: whoever starts it holds its run lock (lock-file.ts, next to the VM files)
// until QEMU has exited and the disks are closed. Another Spindle process, even one with another
// runtime directory, refuses to start that VM, to change its settings, or to touch its sockets.
import { describeOwner, lockOwner, tryLock, type HeldLock, type LockOwner } from './lock-file.js';
import { SpindleError } from '../../shared/errors.js';
import type { VmStore } from './store.js';
import type { VmConfig } from '../../shared/model.js';

export class RunLocks {
  constructor(private readonly store: VmStore) {}

  /** Takes VM `config`'s run lock, or refuses naming the process that runs it. */
  claim(config: VmConfig): HeldLock {
    const path = this.store.runLockPath(config.id, { create: true });
    const lock = tryLock(path);
    if (lock) return lock;
    const owner = lockOwner(path);
    throw new SpindleError(
      'CONFLICT',
      `VM '${config.name}' is already running in another Spindle process (${owner ? describeOwner(owner) : 'which is just stopping it'}).`,
    );
  }

  /** The process holding VM `id`'s run lock, or null (the caller knows whether it is itself). */
  owner(id: string): LockOwner | null {
    try {
      return lockOwner(this.store.runLockPath(id));
    } catch {
      return null; // an unreadable lock file says nothing; claim() still cannot take it
    }
  }

  /** The refusal for doing `what` here to a VM that `owner` runs. */
  static elsewhere(config: VmConfig, owner: LockOwner, what: string): SpindleError {
    return new SpindleError(
      'CONFLICT',
      `VM '${config.name}' is running in another Spindle process (${describeOwner(owner)}), so it cannot ${what} from here.`,
    );
  }
}
