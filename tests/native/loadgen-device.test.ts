// Spindle's own virtio-blk device behind the vhost-user server, driven by `spindle loadgen`
// (runLoadgen, in this process) through real memfd memory, mmap'd external ArrayBuffers and
// eventfds, over the real BlockBackend on a real file (O_DIRECT on /var/tmp), with every engine.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { runLoadgen, type LoadgenOptions } from '../../electron/tools/loadgen.js';
import { VhostUserServer } from '../../electron/dataplane/vhost-user/server.js';
import { VirtioBlkDevice } from '../../electron/dataplane/virtio/virtio-blk.js';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { makeFile, tempDir } from '../lib/loop.js';

const base = (socket: string): LoadgenOptions => ({
  socket,
  rw: 'randread',
  bs: 4096,
  iodepth: 32,
  queues: 1,
  runtimeSec: 0.5,
  size: 0,
  verify: false,
  verifyOnly: false,
  rwmixread: 50,
  seed: 7,
});

for (const { aio, cache } of [
  { aio: 'threads', cache: 'writeback' },
  { aio: 'native', cache: 'none' },
  { aio: 'io_uring', cache: 'none' },
] as const) {
  test(`loadgen drives the Spindle virtio-blk device over vhost-user on a real file (${aio} + ${cache}): verify on 2 queues, then random reads`, async (t) => {
    const dir = tempDir('spindle-lg-dev-', '/var/tmp');
    t.after(() => dir.cleanup());
    const path = makeFile(join(dir.path, 'disk.img'), 8 << 20);
    const blk = await BlockBackend.open(path, { aio, cache });
    // Which queues' tags reach the backend, and how many submits carry them (the backend does the I/O).
    const queues = new Set<number>();
    let begun = 0;
    let submits = 0;
    const begin = blk.begin.bind(blk);
    const submit = blk.submit.bind(blk);
    blk.begin = (tag, ...rest) => (queues.add(tag >>> 16), begun++, begin(tag, ...rest));
    blk.submit = () => (submits++, submit());
    const dev = new VirtioBlkDevice(blk, { numQueues: 2, serial: 'lg' });
    const server = VhostUserServer.listen({ socketPath: join(dir.path, 'disk.sock'), device: dev });
    const broken: string[] = [];
    server.on('broken', (_q, reason) => broken.push(reason));
    try {
      const v = await runLoadgen({ ...base(server.socketPath), rw: 'randwrite', queues: 2, verify: true, size: 4 << 20 });
      assert.equal(v.errors, 0);
      assert.deepEqual(v.verify, { blocks: 1024, mismatches: 0, firstMismatchOffset: null });
      assert.equal(v.writes, 1024);
      assert.deepEqual([...queues].sort(), [0, 1], 'both queues carried requests');
      assert.ok(submits < begun, `requests are submitted in batches (${begun} in ${submits} submits)`);
      const counters = blk.counters.snapshot();
      assert.ok(counters.write.ops >= 1024, `the backend wrote (${counters.write.ops} writes)`);
      // The pattern is in the file, and nothing was written past --size.
      await blk.drain();
      const file = readFileSync(path);
      assert.ok(file.subarray(0, 4 << 20).some((b) => b !== 0), 'the written half holds data');
      assert.ok(
        file.subarray(4 << 20).every((b) => b === 0),
        'nothing written past --size',
      );

      const r = await runLoadgen({ ...base(server.socketPath), verifyOnly: true, size: 4 << 20 });
      assert.equal(r.verify!.mismatches, 0);
      const rr = await runLoadgen(base(server.socketPath));
      assert.equal(rr.errors, 0);
      assert.ok(rr.reads > 0 && rr.writes === 0);
      // The driver's own CPU: something, and no more than every core for the whole run.
      assert.ok(
        rr.driverCpuSec > 0 && rr.driverCpuSec <= rr.runtimeSec * cpus().length + 0.05,
        `driver CPU ${rr.driverCpuSec} s over ${rr.runtimeSec} s`,
      );
      assert.deepEqual(broken, []);
    } finally {
      await server.close();
      await blk.close();
    }
  });
}
