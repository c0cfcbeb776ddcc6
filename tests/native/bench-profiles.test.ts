// The comparison's guest-like profiles (electron/shared/bench-profiles.ts) through the API router
// on the scratch disk: 4k random reads and writes and a 70/30 mix with 32 requests in flight, each
// cell repeated, beside (not inside) the 2009 post's sequential columns.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { apiSetup } from '../lib/api.js';
import { GUEST_PROFILES } from '../../electron/shared/bench-profiles.js';
import type { Result, TopicEvent } from '../../electron/shared/api.js';

type BenchResult = Result<'bench.result'>;

test('guest-like profiles run at random offsets with 32 in flight, repeated per cell, and are labelled as such', async () => {
  const s = apiSetup('spindle-bench-profiles-', { base: '/var/tmp' });
  try {
    const { benchId } = (await s.router.call('bench.start', {
      target: { kind: 'scratch' },
      bytesPerRun: 1 << 20,
      repeats: 2,
      variants: [{ aio: 'threads' }, { aio: 'io_uring' }],
      workloads: [{ op: 'write', recordBytes: 64 << 10 }, ...GUEST_PROFILES],
    })) as { benchId: string };
    const steps: string[] = [];
    await new Promise<void>((resolve) => {
      const off = s.router.subscribe('bench.progress', { benchId }, (e) => {
        const p = e as TopicEvent<'bench.progress'>;
        if (p.step) steps.push(p.step);
        if (p.state !== 'running') {
          off();
          resolve();
        }
      });
    });
    const result = (await s.router.call('bench.result', { benchId })) as BenchResult;
    assert.equal(result.state, 'done', result.error);
    assert.equal(result.rows.length, 2 * 2 * 4, 'two repeats of two modes by four workloads');
    const guest = result.rows.filter((r) => r.random);
    assert.equal(guest.length, 2 * 2 * 3);
    for (const r of guest) {
      assert.equal(r.iodepth, 32, JSON.stringify(r));
      assert.equal(r.recordBytes, 4096);
      assert.ok(r.iops > 0 && r.errors === 0, JSON.stringify(r));
    }
    const mixed = guest.filter((r) => r.op === 'mixed');
    assert.equal(mixed.length, 4);
    assert.ok(mixed.every((r) => r.readPercent === 70));
    const seq = result.rows.filter((r) => !r.random);
    assert.ok(seq.every((r) => r.op === 'write' && r.recordBytes === 64 << 10 && r.iodepth === undefined));
    assert.deepEqual(new Set(result.rows.map((r) => r.repeat ?? 0)), new Set([0, 1]));
    for (const label of ['random read 4k ×32', 'random write 4k ×32', 'mixed 70/30 4k ×32'])
      assert.ok(steps.some((x) => x.includes(label)), `a progress step names "${label}": ${steps.join(' | ')}`);
  } finally {
    await s.cleanup();
  }
});
