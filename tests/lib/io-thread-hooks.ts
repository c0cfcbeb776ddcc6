// The main-thread side of test-io-thread.ts: run IOThreads from the test entry, and crash one.
import { BroadcastChannel } from 'node:worker_threads';
import { setIoThreadEntry } from '../../electron/host/disks/disk-server.js';
import type { DiskServer } from '../../electron/host/disks/disk-server.js';
import { CRASH_CHANNEL } from './io-thread-channel.js';

/** Every DiskServer started from now on in this process runs its IOThread from test-io-thread.ts. */
export function useTestIoThread(): void {
  setIoThreadEntry(new URL('./test-io-thread.js', import.meta.url));
}

/** Makes `ds`'s IOThread throw in its event loop; resolves once the thread has taken the request. */
export async function crashIoThread(ds: DiskServer, timeoutMs = 30_000): Promise<void> {
  const channel = new BroadcastChannel(CRASH_CHANNEL);
  const socketPath = ds.spec.socketPath;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the IOThread of ${socketPath} did not take the crash request within ${timeoutMs} ms`)),
        timeoutMs,
      );
      channel.onmessage = (e) => {
        const data = (e as MessageEvent).data as { crashing?: string };
        if (data?.crashing !== socketPath) return;
        clearTimeout(timer);
        resolve();
      };
      channel.postMessage(socketPath);
    });
  } finally {
    channel.close();
  }
}
