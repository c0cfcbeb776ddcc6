// The engine-level load generator (tools/engine-workload.ts) plays the same Workload type as the
// vhost-user one (tools/loadgen.ts): every rw mode, including the random mix, on a real file
// through a real engine, counted by the disk's own counters.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { runWorkload } from '../../electron/tools/engine-workload.js';
import { RW_MODES } from '../../electron/tools/workload.js';
import { makeFile, tempDir } from '../lib/loop.js';

test('runWorkload plays each rw mode: reads, writes, or both for randrw, never the wrong direction', async () => {
  // /var/tmp: O_DIRECT, which a tmpfs /tmp may not offer.
  const dir = tempDir('spindle-engine-workload-', '/var/tmp');
  try {
    const path = makeFile(join(dir.path, 'disk.img'), 8 << 20);
    const b = await BlockBackend.open(path, { aio: 'threads', cache: 'none', nowait: 'off' });
    try {
      for (const rw of RW_MODES) {
        const before = b.counters.snapshot();
        const r = await runWorkload(b, { name: rw, rw, bs: 4096, iodepth: 4, rwmixread: 50 }, 0.3);
        const after = b.counters.snapshot();
        const reads = after.read.ops - before.read.ops;
        const writes = after.write.ops - before.write.ops;
        assert.ok(r.ios > 0, `${rw}: some I/O was done`);
        assert.equal(reads + writes, r.ios, `${rw}: every request was a read or a write`);
        if (rw === 'randrw') assert.ok(reads > 0 && writes > 0, `randrw mixes both (${reads} reads, ${writes} writes)`);
        else if (rw.endsWith('read')) assert.equal(writes, 0, `${rw} writes nothing`);
        else assert.equal(reads, 0, `${rw} reads nothing`);
      }
    } finally {
      await b.close();
    }
  } finally {
    dir.cleanup();
  }
});
