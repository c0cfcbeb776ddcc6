// Property targets for QMP framing: lines split across any chunk boundaries parse
// exactly; random bytes from the peer throw nothing but SpindleError. Bounded in
// tests/unit/qmp-framing.test.ts, long in `npm run fuzz`.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { QmpFramer } from '../../../electron/host/vm/qmp.js';
import { SpindleError } from '../../../electron/shared/errors.js';
import type { FuzzTarget } from '../target.js';

const enc = (s: string) => new TextEncoder().encode(s);
const MSGS = [{ QMP: { version: {} } }, { return: {}, id: 1 }, { event: 'STOP', data: {} }, { return: { s: 'é ✓ \n in string' }, id: 2 }];
const WIRE = enc(MSGS.map((m) => JSON.stringify(m) + '\r\n').join(''));

export const qmpChunks: FuzzTarget<void> = {
  name: 'qmp-framer-chunks',
  suite: 'unit',
  bounded: 300,
  property: () =>
    fc.property(fc.array(fc.integer({ min: 0, max: WIRE.length }), { maxLength: 10 }), (cuts) => {
      const points = [0, ...cuts.sort((a, b) => a - b), WIRE.length];
      const f = new QmpFramer();
      const out = [];
      for (let i = 1; i < points.length; i++) out.push(...f.push(WIRE.subarray(points[i - 1]!, points[i]!)));
      assert.deepEqual(out, MSGS);
    }),
};

export const qmpRandomBytes: FuzzTarget<void> = {
  name: 'qmp-framer-random-bytes',
  suite: 'unit',
  bounded: 1000,
  property: () =>
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.json(), { maxLength: 4 }).map((js) => enc(js.join('\n') + '\n')),
      ),
      (bytes) => {
        try {
          new QmpFramer(256).push(bytes);
        } catch (e) {
          return e instanceof SpindleError;
        }
        return true;
      },
    ),
};

export const qmpTargets = [qmpChunks, qmpRandomBytes];
