// The guest scenarios against `spindle export`: every aio mode on an image file and on a loop
// device, the full set for one mode per backing and a core subset for the others (each group is
// one TCG boot), several cache modes so the guest's write-cache view is checked against each.
import { spindleExportServer } from './disk-server.js';
import { serverRestartSuite, singleDiskSuite, twoDiskSuite, type IoCheck } from './scenarios.js';

const factory = spindleExportServer;
const CORE: IoCheck[] = ['direct-io', 'sector-512', 'flush', 'discard', 'fio-verify'];

singleDiskSuite('spindle export, aio=threads cache=writeback, image file (full set)', {
  factory,
  aio: 'threads',
  cache: 'writeback',
  backing: 'file',
  checkServerStats: true,
});
singleDiskSuite('spindle export, aio=native cache=none, loop device over /dev/shm (full set)', {
  factory,
  aio: 'native',
  cache: 'none',
  backing: 'loop',
  checkServerStats: true,
});
singleDiskSuite('spindle export, aio=io_uring cache=none, image file', {
  factory,
  aio: 'io_uring',
  cache: 'none',
  backing: 'file',
  checks: CORE,
  checkServerStats: true,
});
singleDiskSuite('spindle export, aio=threads cache=writethrough, loop device over /dev/shm', {
  factory,
  aio: 'threads',
  cache: 'writethrough',
  backing: 'loop',
  checks: CORE,
  checkServerStats: true,
});
singleDiskSuite('spindle export, aio=native cache=directsync, image file', {
  factory,
  aio: 'native',
  cache: 'directsync',
  backing: 'file',
  checks: CORE,
  checkServerStats: true,
});
singleDiskSuite('spindle export, aio=io_uring cache=none, loop device over /dev/shm', {
  factory,
  aio: 'io_uring',
  cache: 'none',
  backing: 'loop',
  checks: CORE,
  checkServerStats: true,
});
twoDiskSuite('spindle export, aio=io_uring cache=none, two disks (2 queues + read-only)', {
  factory,
  aio: 'io_uring',
  cache: 'none',
  backing: 'file',
});
twoDiskSuite('spindle export, aio=native cache=none, two disks on loop devices', {
  factory,
  aio: 'native',
  cache: 'none',
  backing: 'loop',
});
serverRestartSuite('spindle export, aio=io_uring cache=none, SIGKILLed and restarted under the guest', {
  factory,
  aio: 'io_uring',
  cache: 'none',
  backing: 'file',
});
