// The one error->wire mapper (electron/api/errors.ts): a SpindleError reaches the client with its
// code and sentence, a missing file as NOT_FOUND, and a bug as "internal error (id …)" whose id is
// in the log beside the real error, never its text. Both the message session (WebSocket, IPC) and
// the local socket go through it, behind the real router.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { apiSetup } from '../lib/api.js';
import { createRouter } from '../../electron/api/router.js';
import { ApiSession } from '../../electron/api/session.js';
import { serveLocalApi } from '../../electron/api/local-socket.js';
import { setBugLog } from '../../electron/api/errors.js';
import { SpindleError } from '../../electron/shared/errors.js';
import type { WireMessage } from '../../electron/api/wire.js';
import { exchange } from '../fuzz/targets/local-socket.js';

const SECRET = 'secret-detail-7731';

function setup() {
  const s = apiSetup('spindle-api-errors-');
  const router = createRouter({
    manager: s.backend.manager,
    sampler: s.backend.sampler,
    appInfo: () => {
      throw new TypeError(`Cannot read properties of undefined (reading '${SECRET}')`);
    },
    advisor: {
      inspect: async () => {
        throw new SpindleError('NOT_A_DISK', 'That file is not a disk image.');
      },
      probe: async (path) => {
        throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT' });
      },
      createImage: async () => {
        throw `${SECRET} thrown as a string`;
      },
      preallocate: async () => {
        throw new Error('unused');
      },
    },
  });
  const logged: { id: string; err: unknown }[] = [];
  const prev = setBugLog((id, err) => logged.push({ id, err }));
  return { ...s, router, logged, cleanup: async () => (setBugLog(prev), await s.cleanup()) };
}

type Result = Extract<WireMessage, { kind: 'result' }>;

test('over a session: SpindleErrors and missing files keep their sentence, bugs become internal errors with a logged id', async () => {
  const s = setup();
  try {
    const out: Result[] = [];
    const session = new ApiSession(s.router, (m) => void (m.kind === 'result' && out.push(m)));
    const img = join(s.dir, 'none.img');
    session.receive(JSON.stringify({ kind: 'call', id: 1, method: 'app.info', params: {} }));
    session.receive(JSON.stringify({ kind: 'call', id: 2, method: 'advisor.inspect', params: { path: img } }));
    session.receive(JSON.stringify({ kind: 'call', id: 3, method: 'advisor.probe', params: { path: img } }));
    session.receive(
      JSON.stringify({ kind: 'call', id: 4, method: 'advisor.createImage', params: { path: img, sizeBytes: 1 << 20, preallocate: false } }),
    );
    const deadline = Date.now() + 10_000;
    while (out.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(out.length, 4, 'waited for four answers');
    const byId = new Map(out.map((m) => [m.id, m]));
    const err = (id: number) => {
      const m = byId.get(id)!;
      assert.equal(m.ok, false);
      return (m as Extract<Result, { ok: false }>).error;
    };
    assert.deepEqual(err(2), { code: 'NOT_A_DISK', message: 'That file is not a disk image.' });
    assert.equal(err(3).code, 'NOT_FOUND');
    assert.equal(err(3).errno, 'ENOENT');
    for (const id of [1, 4]) {
      const e = err(id);
      assert.equal(e.code, 'INTERNAL');
      assert.doesNotMatch(e.message, new RegExp(SECRET));
      const m = /internal error \(id ([0-9a-f]{8})\)/.exec(e.message);
      assert.ok(m, `not an internal error with an id: ${e.message}`);
      const entry = s.logged.find((l) => l.id === m[1]);
      assert.ok(entry, `id ${m[1]} was not logged`);
      assert.match(String(entry.err instanceof Error ? entry.err.message : entry.err), new RegExp(SECRET));
    }
    assert.equal(s.logged.length, 2, 'only the two bugs are logged');
    assert.notEqual(s.logged[0]!.id, s.logged[1]!.id);
  } finally {
    await s.cleanup();
  }
});

test('over the local socket: the same mapper, so a bug hides its text there too', async () => {
  const s = setup();
  const path = join(s.dir, 'api.sock');
  const server = await serveLocalApi(s.router, path);
  try {
    const { replies } = await exchange(
      path,
      '{"id":1,"method":"app.info","params":{}}\n{"id":2,"method":"advisor.inspect","params":{"path":"/x.img"}}\n',
      2,
    );
    const rs = replies as { id: number; ok: boolean; error: { code: string; message: string } }[];
    const bug = rs.find((r) => r.id === 1);
    const user = rs.find((r) => r.id === 2);
    assert.equal(bug!.error.code, 'INTERNAL');
    assert.match(bug!.error.message, /internal error \(id [0-9a-f]{8}\)/);
    assert.doesNotMatch(bug!.error.message, new RegExp(SECRET));
    assert.deepEqual(user, { id: 2, ok: false, error: { code: 'NOT_A_DISK', message: 'That file is not a disk image.' } });
    assert.equal(s.logged.length, 1);
  } finally {
    await new Promise((r) => server.close(r));
    await s.cleanup();
  }
});
