// Spindle's own virtio-blk device behind the vhost-user server, driven by `spindle loadgen`
// (runLoadgen, in this process) through real memfd memory, mmap'd external ArrayBuffers and
// eventfds. The disk under the device is the MemoryBlockDevice TEST DOUBLE: the real BlockBackend
// is built and tested on real files by another helper and is not part of this branch yet; the
// loadgen-qsd tests cover real files through qemu-storage-daemon.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runLoadgen, type LoadgenOptions } from '../../electron/tools/loadgen.js';
import { VhostUserServer } from '../../electron/dataplane/vhost-user/server.js';
import { VirtioBlkDevice } from '../../electron/dataplane/virtio/virtio-blk.js';
import { MemoryBlockDevice } from '../unit/helpers/memory-block-device.js';

const base = (socket: string): LoadgenOptions => ({
  socket, rw: 'randread', bs: 4096, iodepth: 32, queues: 1, runtimeSec: 0.5, size: 0,
  verify: false, verifyOnly: false, rwmixread: 50, seed: 7,
});

test('loadgen drives the Spindle virtio-blk device over vhost-user: verify on 2 queues, then random reads', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-lg-dev-'));
  const blk = new MemoryBlockDevice({ sizeBytes: 8 << 20, autoComplete: true });
  const dev = new VirtioBlkDevice(blk, { numQueues: 2, serial: 'lg' });
  const server = VhostUserServer.listen({ socketPath: join(dir, 'disk.sock'), device: dev });
  const broken: string[] = [];
  server.on('broken', (_q, reason) => broken.push(reason));
  try {
    const v = await runLoadgen({ ...base(server.socketPath), rw: 'randwrite', queues: 2, verify: true, size: 4 << 20 });
    assert.equal(v.errors, 0);
    assert.deepEqual(v.verify, { blocks: 1024, mismatches: 0, firstMismatchOffset: null });
    assert.equal(v.writes, 1024);
    assert.ok(blk.log.some((r) => r.tag >>> 16 === 1), 'queue 1 carried requests');
    assert.ok(blk.submits < blk.log.length, 'requests are submitted in batches');
    // The pattern is on the (double's) disk, not just echoed through guest memory.
    assert.ok(blk.disk.subarray(0, 4 << 20).some((b) => b !== 0));
    assert.ok(blk.disk.subarray(4 << 20).every((b) => b === 0), 'nothing written past --size');

    const r = await runLoadgen({ ...base(server.socketPath), verifyOnly: true, size: 4 << 20 });
    assert.equal(r.verify!.mismatches, 0);
    const rr = await runLoadgen(base(server.socketPath));
    assert.equal(rr.errors, 0);
    assert.ok(rr.reads > 0 && rr.writes === 0);
    assert.deepEqual(broken, []);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
