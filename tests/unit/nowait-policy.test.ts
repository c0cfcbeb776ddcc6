import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NowaitPolicy } from '../../electron/dataplane/block/nowait-policy.js';

const zero = { submitted: 0, fallbacks: 0, ops: 0 };
const opts = { windowRequests: 1000, maxFallbackRatio: 0.2, probeAfterRequests: 5000, probeAfterMs: 60_000 };

test('turns a direction off above the threshold, with a sentence, and probes again after N requests', () => {
  const p = new NowaitPolicy({ read: zero, write: zero }, opts);
  assert.deepEqual(p.update({ read: zero, write: { submitted: 999, fallbacks: 900, ops: 999 } }, 0), [], 'window not full yet');
  const [off, ...rest] = p.update({ read: zero, write: { submitted: 1000, fallbacks: 930, ops: 1000 } }, 10);
  assert.equal(rest.length, 0);
  assert.equal(off!.direction, 'write');
  assert.equal(off!.enabled, false);
  assert.match(off!.message, /^writes fell back 93% of the time: .*preallocate it to make native fast/);
  assert.equal(p.enabled('write'), false);
  assert.equal(p.enabled('read'), true);
  assert.deepEqual(p.update({ read: zero, write: { submitted: 1000, fallbacks: 930, ops: 5999 } }, 20), []);
  const [probe] = p.update({ read: zero, write: { submitted: 1000, fallbacks: 930, ops: 6000 } }, 30);
  assert.equal(probe!.enabled, true);
  assert.equal(p.enabled('write'), true);
});

test('probes again after a while even without requests; stays on below the threshold', () => {
  const p = new NowaitPolicy({ read: zero, write: zero }, opts);
  assert.equal(p.update({ read: { submitted: 1000, fallbacks: 300, ops: 1000 }, write: zero }, 0)[0]!.enabled, false);
  assert.deepEqual(p.update({ read: { submitted: 1000, fallbacks: 300, ops: 1000 }, write: zero }, 59_999), []);
  assert.equal(p.update({ read: { submitted: 1000, fallbacks: 300, ops: 1000 }, write: zero }, 60_000)[0]!.enabled, true);
  assert.deepEqual(p.update({ read: { submitted: 2000, fallbacks: 500, ops: 2000 }, write: zero }, 60_001), [], '20% exactly is not above');
});

test('property: never silently off for good; off only after a window above the threshold', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(3000), fc.double({ min: 0, max: 1, noNaN: true })), { minLength: 1, maxLength: 50 }), (steps) => {
      const p = new NowaitPolicy({ read: zero, write: zero }, opts);
      let s = { ...zero },
        t = 0;
      for (const [n, ratio] of steps) {
        s = { submitted: s.submitted + n, fallbacks: s.fallbacks + Math.floor(n * ratio), ops: s.ops + n };
        t += 1000;
        for (const e of p.update({ read: zero, write: s }, t)) {
          if (!e.enabled) assert.ok(e.fallbackRatio > 0.2 && e.message.length > 20);
        }
      }
      // However it ended, enough time brings a probe.
      if (!p.enabled('write')) p.update({ read: zero, write: s }, t + 60_000);
      assert.equal(p.enabled('write'), true);
    }),
  );
});
