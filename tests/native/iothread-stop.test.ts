// `spindle export` now and then never answered stop. The cause: a stop() that
// arrived while the disk's IOThread was being restarted after a crash terminated the new worker
// (right, the disk is stopping) and then sent 'stop' to the old one, already dead, and waited for
// its answer until the 30 s deadline. A stop during a restart must finish at once.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DiskServer, type DiskEvent } from '../../electron/host/disks/disk-server.js';
import { runLoadgen } from '../../electron/tools/loadgen.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { crashIoThread, useTestIoThread } from '../lib/io-thread-hooks.js';

useTestIoThread();  // crashIoThread below

/** Starts a disk, serves it, crashes its IOThread and calls stop() `when` the restart has begun
 *  ('at-event': from the 'restarting' listener; a number: that many ms later, while the new worker
 *  starts). Returns how long stop() took and the disk's events. */
async function stopDuringRestart(when: 'at-event' | number): Promise<{ ms: number; events: DiskEvent[] }> {
  const dir = tempDir('spindle-stop-');
  let ds: DiskServer | null = null;
  try {
    ds = await DiskServer.start({
      path: makeFile(join(dir.path, 'd.img'), 16 << 20), socketPath: join(dir.path, 'd.sock'),
      aio: 'threads', cache: 'writeback', nowait: 'off', readOnly: false, queues: 1, serial: 's',
    });
    const events: DiskEvent[] = [];
    ds.on('event', (e) => events.push(e));
    const served = await runLoadgen({ socket: ds.spec.socketPath, rw: 'randwrite', bs: 4096, iodepth: 8, queues: 1, runtimeSec: 0.2, size: 1 << 20, verify: true, verifyOnly: false, rwmixread: 50, seed: 1 });
    assert.equal(served.verify?.mismatches, 0);
    const server = ds;
    const stopped = new Promise<number>((resolve, reject) => {
      server.on('event', (e) => {
        if (e.kind !== 'restarting') return;
        const stop = (): void => {
          const t0 = Date.now();
          server.stop().then(() => resolve(Date.now() - t0), reject);
        };
        if (when === 'at-event') stop();
        else setTimeout(stop, when);
      });
    });
    await crashIoThread(ds);
    let timer: NodeJS.Timeout | undefined;
    const ms = await Promise.race([stopped, new Promise<number>((r) => (timer = setTimeout(() => r(-1), 60_000)))]);
    clearTimeout(timer);
    assert.notEqual(ms, -1, 'stop() did not finish within 60 s');
    ds = null;
    return { ms, events };
  } finally {
    await ds?.stop();
    dir.cleanup();
  }
}

for (const when of ['at-event', 20] as const) {
  test(`stop() while the IOThread is being restarted after a crash (${when === 'at-event' ? 'called from the restarting event' : `${when} ms into the restart`}) answers at once`, async () => {
    const { ms, events } = await stopDuringRestart(when);
    assert.ok(ms < 10_000, `stop() took ${ms} ms (the 30 s deadline, not an answer)`);
    assert.ok(!events.some((e) => e.kind === 'log' && /did not stop/.test(e.line)), JSON.stringify(events));
    assert.ok(!events.some((e) => e.kind === 'restarted'), 'the disk was not brought back while stopping');
  });
}
