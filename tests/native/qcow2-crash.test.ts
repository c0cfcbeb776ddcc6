// qcow2 crash consistency: a writer playing the guest (tests/lib/crash-writer.ts) makes
// allocating writes (every block's first write allocates its 4 KiB cluster) and flushes through
// `spindle export --format qcow2`, which is SIGKILLed at a random moment (seeded; the seed is
// printed). After every kill `qemu-img check` finds at most leaked clusters, and the image, read
// through QEMU's own qcow2 driver, holds every block a completed FLUSH covered, no torn block.
// Between rounds QEMU discards the region, so the next round allocates again.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { AioMode, CacheMode } from '../../electron/shared/modes.js';
import { tempDir } from '../lib/loop.js';
import { CrashWriter, WriterState } from '../lib/crash-writer.js';
import { spindleExportServer, type DiskServer } from '../guest/disk-server.js';
import { qemuCheck, qemuImg, seeded } from '../lib/qcow2.js';
import { sleep, waitFor } from '../lib/wait.js';

const BLOCKS = 512; // 2 MiB
const ROUNDS = 12;
const SEED = Number(process.env.SPINDLE_CRASH_SEED ?? Date.now() % 1_000_000);
const MODES: { aio: AioMode; cache: CacheMode }[] = [
  { aio: 'threads', cache: 'writeback' },
  { aio: 'native', cache: 'none' },
  { aio: 'io_uring', cache: 'none' },
];

test(`${ROUNDS} SIGKILLs of spindle export --format qcow2 during allocating writes: qemu-img check finds at most leaks, flushed data is there`, async (t) => {
  const dir = tempDir('spindle-qcow2-crash-');
  t.after(() => dir.cleanup());
  t.diagnostic(`SPINDLE_CRASH_SEED=${SEED}`);
  const r = seeded(SEED);
  const img = join(dir.path, 'disk.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', img, String(16 << 20));
  const socket = join(dir.path, 'disk.sock');
  let server: DiskServer | null = null;
  let leaks = 0;
  let writes = 0;
  try {
    for (let k = 0; k < ROUNDS; k++) {
      const { aio, cache } = MODES[k % MODES.length]!;
      const state = new WriterState(BLOCKS);
      server = await spindleExportServer({ path: img, socket, aio, cache, format: 'qcow2', queues: 1 });
      const writer = new CrashWriter(state, 8, 2 + r.next(10), SEED + k);
      await writer.start(socket);
      // The kill lands at a random moment after the writer has really written: on a loaded
      // machine a fixed sleep can end before the first completion.
      await waitFor(() => state.writes >= 8 || state.errors > 0, {
        timeoutMs: 120_000,
        what: `round ${k + 1} (aio ${aio}, cache ${cache}): the writer to complete 8 writes (SPINDLE_CRASH_SEED=${SEED})`,
        detail: () => `writes ${state.writes}, errors ${state.errors}`,
      });
      assert.equal(state.errors, 0, `round ${k + 1}: the writer saw no I/O error before the kill`);
      await sleep(r.next(600));
      process.kill(server.pid, 'SIGKILL');
      await server.stop();
      server = null;
      writer.stop();
      writes += state.writes;
      const check = qemuCheck(img);
      assert.ok(check.code === 0 || check.code === 3, `round ${k + 1} (aio ${aio}, cache ${cache}): qemu-img check found more than leaks:\n${check.out}`);
      if (check.code === 3) leaks++;
      const raw = join(dir.path, 'disk.raw');
      qemuImg('convert', '-q', '-f', 'qcow2', '-O', 'raw', img, raw);
      const problems = state.checkDisk(raw, 'flushed');
      assert.deepEqual(problems.slice(0, 10), [], `round ${k + 1} (aio ${aio}, cache ${cache}): ${problems.length} block(s) wrong`);
      // QEMU discards the region: the next round's writes allocate again.
      const d = spawnSync('qemu-io', ['-f', 'qcow2', '-c', `discard 0 ${BLOCKS * 4096}`, img], { encoding: 'utf8' });
      assert.equal(d.status, 0, d.stderr);
    }
    t.diagnostic(`${ROUNDS} kills, ${writes} writes completed, ${leaks} round(s) with leaked clusters, no corruption`);
  } finally {
    if (server) await server.stop();
  }
});
