// Run by engine-concurrency.test.ts in a process of its own: terminates workers whose engines have
// thousands of requests in flight, `rounds` times per engine. With `main` the main thread loads
// the addon too (as the app does); without it the workers are its only users. Prints "survived".
import { Worker } from 'node:worker_threads';
import { DiskCounters } from '../../electron/dataplane/block/stats.js';

const [path, rounds, main] = [process.argv[2]!, Number(process.argv[3]), process.argv[4] === 'main'];
if (main) await import('../../electron/dataplane/native/addon.js');
const fixture = new URL('./engine-worker-fixture.js', import.meta.url);
for (let i = 0; i < rounds; i++) {
  for (const aio of ['threads', 'native', 'io_uring']) {
    const counters = new DiskCounters();
    const w = new Worker(fixture, { workerData: { path, aio, cache: 'none', counters: counters.buffer, mode: 'abandon' } });
    await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    // Terminate at a varying moment while completions are arriving.
    await new Promise((r) => setTimeout(r, i % 4));
    await w.terminate();
  }
}
console.log('survived');
