// Runs in a worker_thread for engine-concurrency.test.ts: an engine owned by the worker's loop.
import { parentPort, workerData } from 'node:worker_threads';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { DiskCounters } from '../../electron/dataplane/block/stats.js';
import type { AioMode, CacheMode } from '../../electron/shared/modes.js';
import { OPS } from './engine-helpers.js';

const { path, aio, cache, counters, mode } = workerData as { path: string; aio: AioMode; cache: CacheMode; counters: SharedArrayBuffer; mode: 'verify' | 'abandon' };
const b = await BlockBackend.open(path, { aio, cache, counters: new DiskCounters(counters) });
if (mode === 'abandon') {
  // Leave thousands of requests in flight and let the worker be terminated under them.
  b.registerBuffer(1, new Uint8Array(4096 * 64));
  b.onComplete = () => {};
  for (let i = 0; i < 4000; i++) {
    b.begin(i, i % 2 ? OPS.Write : OPS.Read, (i % 1024) * 4096);
    b.segment(1, (i % 64) * 4096, 4096);
  }
  b.submit();
  parentPort!.postMessage({ inFlight: b.inFlight });
} else {
  let ok = true;
  for (let i = 0; i < 50; i++) {
    const data = Buffer.alloc(8192, i + 1);
    await b.write(i * 8192, data);
    ok &&= (await b.read(i * 8192, 8192)).equals(data);
  }
  await b.close();
  parentPort!.postMessage({ ok });
}
