// io_uring must never lose a completion. With IORING_SETUP_DEFER_TASKRUN (the single-issuer model)
// `spindle export` stalled for good: buffered 4k random writes at QD32 on a tmpfs file, some
// punted to io-wq, left 32 requests in the kernel with nothing in the CQ ring and the eventfd at 0
// (kernel 6.18; 1 run in 4 on a busy 2-core machine). The default is coop-taskrun since. This
// drives the same path several times with both cores kept busy, each run with a deadline, and
// names the run that stalled.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { runLoadgen } from '../../electron/tools/loadgen.js';
import { spindleExportServer } from '../guest/disk-server.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { killOnExit } from '../lib/proc.js';

const RUNS = 6;

/** A process that keeps one core busy until killed (the load that made the stall show). */
function cpuHog(): ChildProcess {
  const p = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
  killOnExit(p);
  return p;
}

test(`io_uring with the default setup completes every request: ${RUNS} runs of buffered random writes on tmpfs under load`, async (t) => {
  const dir = tempDir('spindle-uring-stall-', '/dev/shm');
  const hogs = [cpuHog(), cpuHog()];
  t.after(() => {
    for (const h of hogs) h.kill('SIGKILL');
    dir.cleanup();
  });
  const path = makeFile(join(dir.path, 'disk.img'), 256 << 20, { written: true });
  for (let run = 1; run <= RUNS; run++) {
    const socket = join(dir.path, `s${run}.sock`);
    const server = await spindleExportServer({ path, socket, aio: 'io_uring', cache: 'writeback', queues: 1 });
    try {
      // loadgen's --timeout: a backend that completes nothing for 10 s fails the run, by name.
      const r = await runLoadgen({
        socket,
        rw: 'randwrite',
        bs: 4096,
        iodepth: 32,
        queues: 1,
        runtimeSec: 2,
        size: 0,
        verify: false,
        verifyOnly: false,
        rwmixread: 50,
        seed: run,
        timeoutSec: 10,
      }).catch(
        (err: unknown) => assert.fail(`run ${run}: ${(err as Error).message}`),
      );
      assert.equal(r.errors, 0, `run ${run}: no errors`);
      assert.ok(r.writes > 1000, `run ${run}: the writes went on (${r.writes})`);
    } finally {
      const { output } = await server.stop();
      assert.doesNotMatch(output, /did not stop/, `run ${run}: the I/O thread drained at stop`);
    }
  }
});
