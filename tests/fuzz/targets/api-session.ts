// Hostile wire messages for the API session both transports share (serve's WebSocket and
// Electron's IPC): any JSON, broken JSON, request-shaped objects with hostile fields, floods of
// subscriptions. receive() never throws; every call/subscribe with a usable id is answered once
// (result or a sentence); closing the session leaves no subscription behind.
// Bounded in tests/unit/security-api-session.test.ts, long in `npm run fuzz`.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { createBackend, type Backend } from '../../../electron/api/backend.js';
import { ApiSession } from '../../../electron/api/session.js';
import type { WireMessage } from '../../../electron/api/wire.js';
import { methods, topics } from '../../../electron/shared/api.js';
import type { FuzzTarget } from '../target.js';
import { isolatedEnv } from '../../lib/api.js';

interface Ctx {
  dir: string;
  backend: Backend;
}

const name = fc.oneof(
  fc.constantFrom(
    'vm.list',
    'vm.get',
    'stats',
    'vms',
    'disk.events',
    'console.serial',
    'app.info',
    '__proto__',
    'constructor',
    'hasOwnProperty',
  ),
  fc.string({ maxLength: 30 }),
);
const id = fc.oneof(fc.nat({ max: 5 }), fc.constantFrom(-1, 1.5, 2 ** 53, NaN), fc.jsonValue());
const request = fc
  .record(
    {
      kind: fc.constantFrom('call', 'subscribe', 'unsubscribe', 'result', 'event', 'CALL'),
      id,
      method: name,
      topic: name,
      params: fc.oneof(fc.jsonValue(), fc.constant({ id: 'x' }), fc.constant({})),
    },
    { requiredKeys: [] },
  )
  .map((r) => JSON.stringify(r));
// Well-formed envelopes with hostile params, so calls and subscriptions reach the router too.
const envelope = fc
  .oneof(
    fc.record({
      kind: fc.constant('call'),
      id: fc.nat({ max: 8 }),
      method: fc.constantFrom(...Object.keys(methods)),
      params: fc.oneof(fc.constant({}), fc.jsonValue()),
    }),
    fc.record({
      kind: fc.constant('subscribe'),
      id: fc.nat({ max: 8 }),
      topic: fc.constantFrom(...Object.keys(topics)),
      params: fc.oneof(fc.constant({}), fc.jsonValue()),
    }),
    fc.record({ kind: fc.constant('unsubscribe'), id: fc.nat({ max: 8 }) }),
  )
  .map((r) => JSON.stringify(r));
const text = fc.oneof(
  request,
  envelope,
  envelope,
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string({ unit: 'binary', maxLength: 80 }),
);

export const apiSessionTarget: FuzzTarget<Ctx> = {
  name: 'api-session-wire',
  suite: 'unit',
  bounded: 300,
  setup() {
    const dir = mkdtempSync(join(tmpdir(), 'spindle-session-'));
    const env = isolatedEnv(dir);
    return { dir, backend: createBackend({ env }) };
  },
  property: ({ backend }, stats) =>
    fc.asyncProperty(fc.array(text, { minLength: 1, maxLength: 12 }), async (msgs) => {
      const sent: WireMessage[] = [];
      const session = new ApiSession(backend.router, (m) => sent.push(m));
      for (const m of msgs) session.receive(m); // must not throw
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setTimeout(r, 1));
      for (const m of sent) {
        if (m.kind !== 'result' || m.ok) continue;
        assert.ok(m.error.message.length > 10 && /[.)]$/.test(m.error.message), `not a sentence: ${JSON.stringify(m)}`);
        stats[m.error.code] = (stats[m.error.code] ?? 0) + 1;
      }
      stats.answered = (stats.answered ?? 0) + sent.filter((m) => m.kind === 'result' && m.ok).length;
      stats.openAtClose = (stats.openAtClose ?? 0) + session.subscriptionCount;
      session.close();
      assert.equal(session.subscriptionCount, 0);
    }),
  after(_ctx, runs, stats) {
    assert.ok((stats.answered ?? 0) > runs / 10, `too few requests got past validation: ${JSON.stringify(stats)}`);
    assert.ok((stats.openAtClose ?? 0) > 0, 'no subscription was ever open when the session closed');
  },
  async teardown({ dir, backend }) {
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  },
};
