// `spindle serve`'s transport: token, origin, host and path checks, and the API over WebSocket.
// The API handler here is a small stand-in: these tests are about the transport, not the router.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, mkdirSync, symlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { WebSocket } from 'ws';
import { startServer, type RunningServer } from '../../electron/api/ws-server.js';
import type { ApiHandler } from '../../electron/api/session.js';
import { SpindleError } from '../../electron/shared/errors.js';
import { createServer as createUnixServer, type Server as NetServer } from 'node:net';
import { waitFor } from '../lib/wait.js';

let dir: string;
let srv: RunningServer;
let vnc: NetServer;
const vncReceived: Buffer[] = [];
const stopped: string[] = [];

const handler: ApiHandler = {
  async call(method, params) {
    if (method === 'echo') return params;
    if (method === 'fail') throw new SpindleError('NOT_FOUND', 'There is no VM named “x”.');
    if (method === 'crash') throw new Error('secret internal detail');
    throw new SpindleError('INVALID_ARGUMENT', `Unknown method '${method}'.`);
  },
  subscribe(topic, _params, listener) {
    if (topic === 'ticks' || topic === 'other') {
      const timer = setInterval(() => listener({ topic, n: 1 }), 5);
      return () => {
        clearInterval(timer);
        stopped.push(topic);
      };
    }
    throw new SpindleError('NOT_FOUND', `There is no topic '${topic}'.`);
  },
};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'spindle-ws-'));
  const root = join(dir, 'dist');
  mkdirSync(join(root, 'assets'), { recursive: true });
  writeFileSync(join(root, 'index.html'), '<!doctype html><title>Spindle</title>');
  writeFileSync(join(root, 'assets', 'app.js'), 'console.log(1)');
  writeFileSync(join(dir, 'secret.txt'), 'outside the root');
  symlinkSync(join(dir, 'secret.txt'), join(root, 'link.txt'));
  // A unix socket standing in for QEMU's VNC display: greets like an RFB server and records input.
  const vncPath = join(dir, 'vnc.sock');
  vnc = createUnixServer((c) => {
    c.write('RFB 003.008\n');
    c.on('data', (d) => vncReceived.push(d));
  });
  await new Promise<void>((ok) => vnc.listen(vncPath, ok));
  srv = await startServer({ handler, staticDir: root, port: 0, vncSocketPath: (id) => (id === 'demo' ? vncPath : null) });
});
after(async () => {
  await srv.close();
  vnc.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Raw HTTP GET, so paths reach the server exactly as written (fetch would normalise '..'). */
function get(
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((ok, fail) => {
    const req = request({ host: '127.0.0.1', port: srv.port, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => ok({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', fail);
    req.end();
  });
}

const q = () => `token=${srv.token}`;

function connect(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((ok, fail) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => ok(ws));
    ws.once('unexpected-response', (_req, res) => fail(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', fail);
  });
}

function collect(ws: WebSocket) {
  const msgs: unknown[] = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (data, isBinary) => {
    msgs.push(isBinary ? { binary: Buffer.from(data as Buffer) } : JSON.parse(String(data)));
    waiters.splice(0).forEach((w) => w());
  });
  return {
    msgs,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the tests read whichever wire message they wait for
    async until(pred: (m: any) => boolean): Promise<any> {
      for (;;) {
        const hit = msgs.find(pred);
        if (hit) return hit;
        await new Promise<void>((r) => waiters.push(r));
      }
    },
  };
}

test('listens on 127.0.0.1 only and prints a URL with the token', () => {
  const addr = srv.server.address() as { address: string };
  assert.equal(addr.address, '127.0.0.1');
  assert.match(srv.url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{32}$/);
});

test('a page request without the token is refused with 403', async () => {
  const r = await get('/');
  assert.equal(r.status, 403);
  assert.match(r.body, /token/);
});

test('a page request with a wrong token is refused with 403', async () => {
  const r = await get('/?token=' + 'x'.repeat(srv.token.length));
  assert.equal(r.status, 403);
});

test('the page with the token is served with a CSP and a cookie that then admits its assets', async () => {
  const r = await get('/?' + q());
  assert.equal(r.status, 200);
  assert.match(r.body, /Spindle/);
  assert.match(String(r.headers['content-security-policy']), /script-src 'self'/);
  assert.doesNotMatch(String(r.headers['content-security-policy']), /unsafe-eval/);
  const cookie = String((r.headers['set-cookie'] as string[])[0]).split(';')[0];
  assert.match(String((r.headers['set-cookie'] as string[])[0]), /HttpOnly; SameSite=Strict/);
  const asset = await get('/assets/app.js', { cookie });
  assert.equal(asset.status, 200);
  assert.equal(asset.headers['content-type'], 'text/javascript; charset=utf-8');
  assert.equal((await get('/assets/app.js')).status, 403);
});

test('a request from another origin is refused with 403 even with the token', async () => {
  const r = await get('/?' + q(), { origin: 'http://evil.example' });
  assert.equal(r.status, 403);
  assert.match(r.body, /origin/);
  const same = await get('/?' + q(), { origin: `http://127.0.0.1:${srv.port}` });
  assert.equal(same.status, 200);
});

test('a request naming another host (DNS rebinding) is refused with 403', async () => {
  const r = await get('/?' + q(), { host: `evil.example:${srv.port}` });
  assert.equal(r.status, 403);
});

test('static paths cannot leave the renderer directory', async () => {
  for (const p of [
    '/../secret.txt',
    '/%2e%2e/secret.txt',
    '/assets/..%2f..%2fsecret.txt',
    '/..%5csecret.txt',
    '/link.txt',
    '/%00index.html',
    '/%E0%A4%A',
  ]) {
    const r = await get(`${p}?${q()}`);
    assert.equal(r.status, 404, p);
    assert.doesNotMatch(r.body, /outside the root/, p);
  }
});

test('methods other than GET and HEAD are refused', async () => {
  const r = await new Promise<number>((ok, fail) => {
    const req = request({ host: '127.0.0.1', port: srv.port, path: '/?' + q(), method: 'POST' }, (res) => {
      res.resume();
      ok(res.statusCode ?? 0);
    });
    req.on('error', fail);
    req.end('x');
  });
  assert.equal(r, 405);
});

test('a WebSocket upgrade without the token is refused with 403', async () => {
  await assert.rejects(connect(`ws://127.0.0.1:${srv.port}/api`), /HTTP 403/);
});

test('a WebSocket upgrade from another origin is refused with 403', async () => {
  await assert.rejects(connect(`ws://127.0.0.1:${srv.port}/api?${q()}`, { origin: 'http://evil.example' }), /HTTP 403/);
});

test('a WebSocket upgrade on another path is refused', async () => {
  await assert.rejects(connect(`ws://127.0.0.1:${srv.port}/other?${q()}`), /HTTP 404/);
});

test('calls over the WebSocket return results and errors as sentences', async () => {
  const ws = await connect(`ws://127.0.0.1:${srv.port}/api?${q()}`, { origin: `http://127.0.0.1:${srv.port}` });
  const c = collect(ws);
  try {
    ws.send(JSON.stringify({ kind: 'call', id: 1, method: 'echo', params: { a: 1 } }));
    ws.send(JSON.stringify({ kind: 'call', id: 2, method: 'fail', params: {} }));
    ws.send(JSON.stringify({ kind: 'call', id: 3, method: 'crash', params: {} }));
    ws.send('{not json');
    ws.send(JSON.stringify({ kind: 'call', id: 5, method: '../../etc', params: {} }));
    ws.send(JSON.stringify({ kind: 'nope', id: 6 }));
    ws.send(JSON.stringify({ kind: 'call', id: -7, method: 'echo', params: {} }));
    assert.deepEqual(await c.until((m) => m.id === 1), { kind: 'result', id: 1, ok: true, result: { a: 1 } });
    assert.deepEqual(await c.until((m) => m.id === 2), {
      kind: 'result',
      id: 2,
      ok: false,
      error: { code: 'NOT_FOUND', message: 'There is no VM named “x”.' },
    });
    const crash = await c.until((m) => m.id === 3);
    assert.equal(crash.error.code, 'INTERNAL');
    assert.doesNotMatch(crash.error.message, /secret/);
    assert.match((await c.until((m) => m.id === -1 && /JSON/.test(m.error.message))).error.message, /not valid JSON/);
    assert.match((await c.until((m) => m.id === 5)).error.message, /no valid method/);
    assert.match((await c.until((m) => m.id === 6)).error.message, /kind 'call', 'subscribe' or 'unsubscribe'/);
    assert.match((await c.until((m) => m.id === -1 && /non-negative/.test(m.error.message))).error.message, /non-negative integer/);
  } finally {
    ws.close();
  }
});

test('subscriptions are acknowledged, stream events, and stop on unsubscribe and when the socket closes', async () => {
  const ws = await connect(`ws://127.0.0.1:${srv.port}/api?${q()}`);
  const c = collect(ws);
  stopped.length = 0;
  ws.send(JSON.stringify({ kind: 'subscribe', id: 10, topic: 'ticks', params: {} }));
  ws.send(JSON.stringify({ kind: 'subscribe', id: 11, topic: 'other', params: {} }));
  ws.send(JSON.stringify({ kind: 'subscribe', id: 12, topic: 'missing', params: {} }));
  ws.send(JSON.stringify({ kind: 'subscribe', id: 10, topic: 'ticks', params: {} }));
  assert.deepEqual(await c.until((m) => m.id === 10 && m.kind === 'result'), { kind: 'result', id: 10, ok: true, result: null });
  assert.deepEqual(await c.until((m) => m.id === 10 && m.kind === 'event'), { kind: 'event', id: 10, event: { topic: 'ticks', n: 1 } });
  await c.until((m) => m.id === 11 && m.kind === 'event');
  assert.match((await c.until((m) => m.id === 12)).error.message, /no topic 'missing'/);
  assert.match((await c.until((m) => m.id === 10 && m.ok === false)).error.message, /already open/);
  ws.send(JSON.stringify({ kind: 'unsubscribe', id: 10 }));
  await waitFor(() => stopped.length >= 1, { timeoutMs: 30_000, what: 'the unsubscribed stream to stop' });
  assert.deepEqual(stopped, ['ticks']);
  ws.close();
  await waitFor(() => stopped.length >= 2, { timeoutMs: 30_000, what: "the closed socket's streams to stop" });
  assert.deepEqual(stopped, ['ticks', 'other']);
});

test('a binary request on the API socket closes the connection', async () => {
  const ws = await connect(`ws://127.0.0.1:${srv.port}/api?${q()}`);
  const code = await new Promise<number>((ok) => {
    ws.on('close', (c) => ok(c));
    ws.send(Buffer.from([1, 2, 3]));
  });
  assert.equal(code, 1003);
});

test('the VNC path bridges bytes both ways to the VM display socket', async () => {
  const ws = await connect(`ws://127.0.0.1:${srv.port}/vnc/demo?${q()}`);
  const c = collect(ws);
  try {
    const hello = await c.until((m) => m.binary);
    assert.equal(hello.binary.toString(), 'RFB 003.008\n');
    ws.send(Buffer.from('RFB 003.008\n'));
    await waitFor(() => Buffer.concat(vncReceived).length >= 12, { timeoutMs: 30_000, what: 'the client version to reach the VNC socket' });
    assert.equal(Buffer.concat(vncReceived).toString(), 'RFB 003.008\n');
  } finally {
    ws.close();
  }
});

test('the VNC path refuses a VM without a display, a malformed id, and a missing token', async () => {
  await assert.rejects(connect(`ws://127.0.0.1:${srv.port}/vnc/other?${q()}`), /HTTP 404/);
  await assert.rejects(connect(`ws://127.0.0.1:${srv.port}/vnc/..%2F..%2Fetc?${q()}`), /HTTP 404/);
  await assert.rejects(connect(`ws://127.0.0.1:${srv.port}/vnc/demo`), /HTTP 403/);
});
