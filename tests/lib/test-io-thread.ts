// A test-only entry for a disk's IOThread: the real one (runIoThread) with hooks the production
// entry does not have. Run by DiskServer once a test calls useTestIoThread() (io-thread-hooks.ts).
//  - crash: a message naming this disk's socket on the CRASH_CHANNEL broadcast channel makes the
//    thread throw in its event loop (as a bug in the data plane would), after answering.
//  - SPINDLE_TEST_COMPLETION_DELAY_MS=N in the environment the thread starts with: completions
//    reach the device N ms late, so a test that kills the server mid-I/O always finds requests in flight.
import { BroadcastChannel, workerData } from 'node:worker_threads';
import { runIoThread } from '../../electron/dataplane/iothread/io-thread.js';
import type { WorkerData } from '../../electron/dataplane/iothread/messages.js';
import type { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { CRASH_CHANNEL } from './io-thread-channel.js';

const { spec } = workerData as WorkerData;

const crashes = new BroadcastChannel(CRASH_CHANNEL);
crashes.unref(); // the thread ends when its disk stops, as the real one does
crashes.onmessage = (e) => {
  if ((e as MessageEvent).data !== spec.socketPath) return;
  crashes.postMessage({ crashing: spec.socketPath });
  setImmediate(() => {
    throw new Error('crash requested by a test');
  });
};

function delayCompletions(blk: BlockBackend): void {
  const delay = Number(process.env.SPINDLE_TEST_COMPLETION_DELAY_MS);
  if (!(delay > 0)) return;
  const deliver = blk.onComplete!;
  blk.onComplete = (tags, results, count) => {
    const t = tags.slice(0, count);
    const r = results.slice(0, count);
    setTimeout(() => deliver(t, r, count), delay);
  };
}

runIoThread({ deviceReady: (backend) => delayCompletions(backend) });
