// Proves the guest, the QEMU harness and the scenarios against the peer, qemu-storage-daemon:
// if these fail, the harness is broken, not Spindle.
import { qsdServer } from './disk-server.js';
import { serverRestartSuite, singleDiskSuite, twoDiskSuite } from './scenarios.js';

singleDiskSuite('qemu-storage-daemon, aio=threads cache=writeback, image file', { factory: qsdServer, aio: 'threads', cache: 'writeback', backing: 'file' });
singleDiskSuite('qemu-storage-daemon, aio=native cache=none, loop device over /dev/shm', {
  factory: qsdServer, aio: 'native', cache: 'none', backing: 'loop',
});
twoDiskSuite('qemu-storage-daemon, aio=io_uring cache=none, two disks', { factory: qsdServer, aio: 'io_uring', cache: 'none', backing: 'file' });
serverRestartSuite('qemu-storage-daemon, aio=threads cache=none, killed and restarted under the guest', { factory: qsdServer, aio: 'threads', cache: 'none', backing: 'file' });
