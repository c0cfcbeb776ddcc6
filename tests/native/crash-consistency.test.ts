// Crash consistency: for every cache mode but unsafe, a writer (a vhost-user frontend
// playing the guest, tests/lib/crash-writer.ts) writes stamped 4 KiB blocks and flushes, the disk
// server (`spindle export`, its own process) is SIGKILLed at a random moment, restarted, and the
// writer goes on against the new one. After every kill the backing file is checked: each block
// holds one whole generation, at least the newest one a completed FLUSH covered, and with
// writethrough and directsync at least the newest completed write.
// What SIGKILL can and cannot show: the kernel keeps what the server wrote (page cache), so this
// proves the server never acknowledges a write or a flush before handing it to the kernel, and
// never tears or misplaces a block; losing the page cache itself (a host crash) is out of reach here.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { AioMode, CacheMode } from '../../electron/shared/modes.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { BLOCK, CrashWriter, WriterState } from '../lib/crash-writer.js';
import { spindleExportServer, type DiskServer } from '../guest/disk-server.js';
import { sleep, waitFor } from '../lib/wait.js';

const BLOCKS = 512; // a 2 MiB region of the disk
const KILLS_PER_MODE = 8;

const MODES: { cache: Exclude<CacheMode, 'unsafe'>; aio: AioMode }[] = [
  { cache: 'writeback', aio: 'threads' },
  { cache: 'none', aio: 'native' },
  { cache: 'writethrough', aio: 'threads' },
  { cache: 'directsync', aio: 'io_uring' },
];

/** Kill moments and flush intervals are pseudo-random from a pinned seed; SPINDLE_CRASH_SEED=N tries another. */
const BASE_SEED = Number(process.env.SPINDLE_CRASH_SEED ?? 424_242);

MODES.forEach(({ cache, aio }, modeIndex) => {
  let seed = BASE_SEED + modeIndex;
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  test(`cache=${cache} (aio=${aio}): ${KILLS_PER_MODE} SIGKILLs of spindle export at random moments lose nothing the writer was promised`, async (t) => {
    const dir = tempDir('spindle-crash-');
    const file = makeFile(join(dir.path, 'disk.img'), 16 << 20, { written: false });
    const socket = join(dir.path, 'disk.sock');
    const state = new WriterState(BLOCKS);
    const durable = cache === 'writethrough' || cache === 'directsync' ? 'completed' : 'flushed';
    let server: DiskServer | null = null;
    t.diagnostic(`SPINDLE_CRASH_SEED=${BASE_SEED}`);
    try {
      for (let k = 0; k < KILLS_PER_MODE; k++) {
        server = await spindleExportServer({ path: file, socket, aio, cache });
        const writer = new CrashWriter(state, 8, 4 + random(12), 1 + k);
        await writer.start(socket);
        // The kill lands at a random moment after the writer has really written (on a loaded
        // machine a fixed sleep can end before the first completion).
        const before = state.writes;
        await waitFor(() => state.writes >= before + 8 || state.errors > 0, {
          timeoutMs: 120_000,
          what: `kill ${k + 1}: the writer to complete 8 writes (SPINDLE_CRASH_SEED=${BASE_SEED})`,
          detail: () => `writes ${state.writes - before}, errors ${state.errors}`,
        });
        await sleep(random(400));
        process.kill(server.pid, 'SIGKILL');
        await server.stop();
        server = null;
        writer.stop();
        const problems = state.checkDisk(file, durable);
        assert.deepEqual(
          problems.slice(0, 10),
          [],
          `after kill ${k + 1} (cache ${cache}, SPINDLE_CRASH_SEED=${BASE_SEED}): ${problems.length} block(s) wrong`,
        );
      }
      assert.equal(state.errors, 0, `a request failed (SPINDLE_CRASH_SEED=${BASE_SEED})`);
      assert.ok(state.flushes > 0, 'no flush completed');
      const written = state.completed.reduce((n, g) => n + (g > 0 ? 1 : 0), 0);
      t.diagnostic(`cache=${cache}: kills ${KILLS_PER_MODE}, writes completed ${state.writes}, flushes ${state.flushes}, blocks checked ${BLOCKS} (${written} written, ${BLOCK} bytes each), blocks lost 0`);
    } finally {
      if (server) await server.stop();
      dir.cleanup();
    }
  });
});
