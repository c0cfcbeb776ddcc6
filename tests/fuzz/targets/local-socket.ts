// Hostile lines on the local API socket (the CLI's way in): any JSON value, broken JSON, binary
// bytes. Each complete line gets exactly one reply line carrying a sentence or a result; the
// backend never throws. Bounded in tests/unit/security-local-socket.test.ts, long in `npm run fuzz`.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { createBackend, type Backend } from '../../../electron/api/backend.js';
import { serveLocalApi } from '../../../electron/api/local-socket.js';
import type { FuzzTarget } from '../target.js';
import { isolatedEnv } from '../../lib/api.js';

interface Ctx {
  dir: string;
  backend: Backend;
  server: Server;
  path: string;
}

/** Sends `payload` and collects `lines` reply lines (or what arrived before the socket closed). */
export function exchange(path: string, payload: Buffer | string, lines: number): Promise<{ replies: unknown[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s: Socket = createConnection(path);
    let buf = '';
    const replies: unknown[] = [];
    const done = (closed: boolean) => {
      s.destroy();
      resolve({ replies, closed });
    };
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        replies.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
      if (replies.length >= lines) done(false);
    });
    s.on('close', () => done(true));
    s.on('error', (e) => (replies.length ? done(true) : reject(e)));
    s.write(payload);
    if (lines === 0) setTimeout(() => done(false), 20);
  });
}

const line = fc.oneof(
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc
    .record({
      id: fc.jsonValue(),
      method: fc.oneof(fc.constantFrom('vm.list', 'vm.get', 'app.info', '__proto__', 'constructor'), fc.string()),
      params: fc.jsonValue(),
    })
    .map((v) => JSON.stringify(v)),
  fc.string({ unit: 'binary', maxLength: 60 }).map((s) => s.replace(/\n/g, ' ')),
);

export const localSocketTarget: FuzzTarget<Ctx> = {
  name: 'local-api-socket',
  suite: 'unit',
  bounded: 200,
  async setup() {
    const dir = mkdtempSync(join(tmpdir(), 'spindle-lsock-'));
    const env = isolatedEnv(dir);
    const backend = createBackend({ env });
    const path = join(dir, 'api.sock');
    return { dir, backend, path, server: await serveLocalApi(backend.router, path) };
  },
  property: ({ path }) =>
    fc.asyncProperty(fc.array(line, { minLength: 1, maxLength: 4 }), async (lines) => {
      const { replies } = await exchange(path, lines.join('\n') + '\n', lines.length);
      assert.equal(replies.length, lines.length, 'one reply per line');
      for (const r of replies as { ok: boolean; error?: { code: string; message: string } }[]) {
        if (r.ok) continue;
        assert.equal(typeof r.error?.code, 'string');
        assert.ok((r.error?.message.length ?? 0) > 10, `a sentence: ${JSON.stringify(r)}`);
      }
    }),
  async after({ path }) {
    const { replies } = await exchange(path, JSON.stringify({ id: 1, method: 'vm.list', params: {} }) + '\n', 1);
    assert.deepEqual(replies, [{ id: 1, ok: true, result: { vms: [], problems: [] } }]);
  },
  async teardown({ dir, backend, server }) {
    await new Promise((r) => server.close(r));
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  },
};
