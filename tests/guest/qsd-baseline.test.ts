// Proves the guest, the QEMU harness and the scenarios against the peer, qemu-storage-daemon:
// if these fail, the harness is broken, not Spindle. No restart scenario here: against
// qemu-storage-daemon 7.2 serverRestartSuite passed twice and hung once here (the guest's fio never
// completed after a SIGKILL: requests in flight at the kill were not replayed), so the peer cannot
// serve as that scenario's baseline.
import { qsdServer } from './disk-server.js';
import { singleDiskSuite, twoDiskSuite } from './scenarios.js';

singleDiskSuite('qemu-storage-daemon, aio=threads cache=writeback, image file', {
  factory: qsdServer,
  aio: 'threads',
  cache: 'writeback',
  backing: 'file',
});
singleDiskSuite('qemu-storage-daemon, aio=native cache=none, loop device over /dev/shm', {
  factory: qsdServer,
  aio: 'native',
  cache: 'none',
  backing: 'loop',
});
twoDiskSuite('qemu-storage-daemon, aio=io_uring cache=none, two disks', {
  factory: qsdServer,
  aio: 'io_uring',
  cache: 'none',
  backing: 'file',
});
