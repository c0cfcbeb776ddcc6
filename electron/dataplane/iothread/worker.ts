// The entry of a disk's IOThread (a worker_thread started by host/disks/disk-server.ts).
import { runIoThread } from './io-thread.js';

runIoThread();
