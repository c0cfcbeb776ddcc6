// Serve mode: reachable on loopback only; token and Origin checked on every request.
// Complements ws-server.test.ts with the hostile variants (look-alike origins, token prefixes,
// non-loopback addresses).
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tcpConnect } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { startServer, refusal, type RunningServer } from '../../electron/api/ws-server.js';
import { SpindleError } from '../../electron/shared/errors.js';

let dir: string;
let srv: RunningServer;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'spindle-serve-sec-'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html>');
  srv = await startServer({
    handler: {
      async call() {
        throw new SpindleError('NOT_FOUND', 'Nothing here.');
      },
      subscribe() {
        return () => undefined;
      },
    },
    staticDir: dir,
    port: 0,
    vncSocketPath: () => null,
  });
});
after(async () => {
  await srv.close();
  rmSync(dir, { recursive: true, force: true });
});

const req = (url: string, headers: Record<string, string>) => ({ url, headers }) as unknown as IncomingMessage;

test("look-alike origins and hosts are refused; only this server's own origin passes", () => {
  const p = srv.port;
  const t = srv.token;
  const host = `127.0.0.1:${p}`;
  const ok = (o?: string) => refusal(req(`/?token=${t}`, { host, ...(o === undefined ? {} : { origin: o }) }), p, t);
  assert.equal(ok(), null);
  assert.equal(ok(`http://127.0.0.1:${p}`), null);
  assert.equal(ok(`http://localhost:${p}`), null);
  for (const bad of [
    'null',
    '',
    `http://127.0.0.1:${p}.evil.example`,
    `http://127.0.0.1:${p}@evil.example`,
    `https://127.0.0.1:${p}`,
    `http://127.0.0.1:${p + 1}`,
    `http://127.0.0.2:${p}`,
    `http://[::1]:${p}`,
    `http://127.0.0.1:${p}/`,
    `file://`,
    'http://evil.example',
  ]) {
    assert.equal(ok(bad), 'foreign origin', `origin ${JSON.stringify(bad)}`);
  }
  for (const h of [`evil.example:${p}`, `127.0.0.1:${p + 1}`, `127.0.0.1`, `127.0.0.1:${p}.evil.example`, '']) {
    assert.equal(refusal(req(`/?token=${t}`, { host: h }), p, t), 'wrong host', `host ${JSON.stringify(h)}`);
  }
});

test('token: prefixes, extensions, case changes, empties and cookie look-alikes are refused', () => {
  const p = srv.port;
  const t = srv.token;
  const host = `127.0.0.1:${p}`;
  assert.ok(t.length >= 32, 'a long random token');
  const flip = t[0] === 'a' ? 'b' + t.slice(1) : 'a' + t.slice(1);
  for (const bad of [
    '',
    t.slice(0, -1),
    t + 'x',
    t.toUpperCase() === t ? t.toLowerCase() + 'Z' : t.toUpperCase(),
    flip,
    `${t}%00`,
    encodeURIComponent(' ' + t),
  ]) {
    assert.equal(refusal(req(`/?token=${bad}`, { host }), p, t), 'missing or wrong token', `token ${JSON.stringify(bad)}`);
  }
  assert.equal(refusal(req('/', { host, cookie: `spindle_token_${p + 1}=${t}` }), p, t), 'missing or wrong token', "another port's cookie");
  assert.equal(refusal(req('/', { host, cookie: `xspindle_token_${p}=${t}` }), p, t), 'missing or wrong token');
  assert.equal(refusal(req('/', { host, cookie: `spindle_token_${p}=${t}` }), p, t), null);
});

test('the server is bound to loopback: every other local address refuses the connection', async () => {
  const others = Object.values(networkInterfaces())
    .flat()
    .filter((a) => a && !a.internal)
    .map((a) => a!.address);
  for (const address of others) {
    const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
      const s = tcpConnect({ host: address, port: srv.port });
      s.once('connect', () => {
        s.destroy();
        resolve(null);
      });
      s.once('error', resolve);
    });
    assert.ok(err, `connected through ${address}`);
    assert.ok(['ECONNREFUSED', 'EADDRNOTAVAIL', 'ENETUNREACH', 'EINVAL'].includes(err.code ?? ''), `${address}: ${err.code}`);
  }
  const loop = await new Promise<boolean>((resolve) => {
    const s = tcpConnect({ host: '127.0.0.1', port: srv.port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  assert.ok(loop, 'loopback works');
});
