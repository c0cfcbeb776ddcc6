// The Electron transport (electron/api/ipc.ts) and the sandboxed preload. Electron itself cannot
// be installed here (its binary download fails), so ipcMain, webContents and the preload's
// `require('electron')` are small EventEmitter stand-ins; the session logic under them is real.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { runInNewContext } from 'node:vm';
import { fileURLToPath } from 'node:url';
import { wireIpc } from '../../electron/api/ipc.js';
import { IPC } from '../../electron/api/bridge.js';
import type { ApiHandler } from '../../electron/api/session.js';
import { SpindleError } from '../../electron/shared/errors.js';

class FakeIpcMain extends EventEmitter {
  handlers = new Map<string, (e: unknown, ...a: unknown[]) => unknown>();
  handle(ch: string, fn: (e: unknown, ...a: unknown[]) => unknown) {
    this.handlers.set(ch, fn);
  }
  removeHandler(ch: string) {
    this.handlers.delete(ch);
  }
}

class FakeSender extends EventEmitter {
  sent: Array<[string, ...unknown[]]> = [];
  destroyed = false;
  constructor(readonly id: number) {
    super();
  }
  send(ch: string, ...args: unknown[]) {
    this.sent.push([ch, ...args]);
  }
  isDestroyed() {
    return this.destroyed;
  }
}

const stopped: string[] = [];
const handler: ApiHandler = {
  async call(method, params) {
    if (method === 'echo') return params;
    throw new SpindleError('NOT_FOUND', `There is no method '${method}'.`);
  },
  subscribe(topic) {
    return () => stopped.push(topic);
  },
};

const tick = () => new Promise((r) => setImmediate(r));

function setup() {
  const ipcMain = new FakeIpcMain();
  const unwire = wireIpc(ipcMain as never, {
    handler,
    trustedOrigin: 'app://spindle/',
    pickFile: async (_s, o) => `/picked/${o.mode}`,
    vncSocketPath: () => null,
  });
  return { ipcMain, unwire };
}

test('calls from the app origin are answered through the same session as the WebSocket', async () => {
  const { ipcMain, unwire } = setup();
  const sender = new FakeSender(1);
  ipcMain.emit(
    IPC.api,
    { sender, senderFrame: { url: 'app://spindle/index.html' } },
    JSON.stringify({ kind: 'call', id: 1, method: 'echo', params: { x: 1 } }),
  );
  ipcMain.emit(
    IPC.api,
    { sender, senderFrame: { url: 'app://spindle/index.html' } },
    JSON.stringify({ kind: 'call', id: 2, method: 'nope', params: {} }),
  );
  await tick();
  assert.deepEqual(sender.sent, [
    [IPC.api, { kind: 'result', id: 1, ok: true, result: { x: 1 } }],
    [IPC.api, { kind: 'result', id: 2, ok: false, error: { code: 'NOT_FOUND', message: "There is no method 'nope'." } }],
  ]);
  unwire();
});

test('messages from any other origin, and non-string messages, are ignored', async () => {
  const { ipcMain, unwire } = setup();
  const sender = new FakeSender(2);
  const call = JSON.stringify({ kind: 'call', id: 1, method: 'echo', params: {} });
  ipcMain.emit(IPC.api, { sender, senderFrame: { url: 'https://evil.example/' } }, call);
  ipcMain.emit(IPC.api, { sender, senderFrame: null }, call);
  ipcMain.emit(IPC.api, { sender, senderFrame: { url: 'app://spindle/' } }, { kind: 'call' });
  await tick();
  assert.deepEqual(sender.sent, []);
  assert.equal(
    await ipcMain.handlers.get(IPC.pickFile)!({ sender, senderFrame: { url: 'file:///x' } }, { title: 't', mode: 'open' }),
    null,
  );
  assert.equal(
    await ipcMain.handlers.get(IPC.pickFile)!({ sender, senderFrame: { url: 'app://spindle/' } }, { title: 't', mode: 'bogus' }),
    '/picked/open',
  );
  unwire();
});

test("a closed window's subscriptions are stopped", async () => {
  const { ipcMain, unwire } = setup();
  stopped.length = 0;
  const sender = new FakeSender(3);
  ipcMain.emit(
    IPC.api,
    { sender, senderFrame: { url: 'app://spindle/' } },
    JSON.stringify({ kind: 'subscribe', id: 5, topic: 'stats', params: {} }),
  );
  await tick();
  assert.deepEqual(sender.sent[0], [IPC.api, { kind: 'result', id: 5, ok: true, result: null }]);
  sender.destroyed = true;
  sender.emit('destroyed');
  assert.deepEqual(stopped, ['stats']);
  unwire();
});

test('a VNC channel for a VM without a display is refused with a sentence', async () => {
  const { ipcMain, unwire } = setup();
  const sender = new FakeSender(4);
  await assert.rejects(
    async () => ipcMain.handlers.get(IPC.vncOpen)!({ sender, senderFrame: { url: 'app://spindle/' } }, 'demo'),
    /no display/,
  );
  await assert.rejects(
    async () => ipcMain.handlers.get(IPC.vncOpen)!({ sender, senderFrame: { url: 'app://spindle/' } }, '../etc'),
    /no display/,
  );
  unwire();
});

test('the compiled preload requires only electron, uses the IPC channel names, and exposes only the bridge', () => {
  const file = fileURLToPath(new URL('../../electron/preload.cjs', import.meta.url));
  const src = readFileSync(file, 'utf8');
  const required = [...src.matchAll(/require\(["']([^"']+)["']\)/g)].map((m) => m[1]);
  assert.deepEqual(required, ['electron']);
  for (const ch of [IPC.api, IPC.pickFile, IPC.vncOpen, IPC.vncData, IPC.vncSend, IPC.vncClose, IPC.vncClosed])
    assert.ok(src.includes(`'${ch}'`), ch);

  const exposed: Record<string, unknown> = {};
  const sent: unknown[][] = [];
  const renderer = new EventEmitter() as EventEmitter & { send: (...a: unknown[]) => void; invoke: (...a: unknown[]) => Promise<unknown> };
  renderer.send = (...a) => sent.push(a);
  renderer.invoke = async () => null;
  const electron = { contextBridge: { exposeInMainWorld: (k: string, v: unknown) => (exposed[k] = v) }, ipcRenderer: renderer };
  const module = { exports: {} };
  runInNewContext(src, {
    require: (n: string) => (n === 'electron' ? electron : assert.fail(`preload required ${n}`)),
    module,
    exports: module.exports,
  });
  assert.deepEqual(Object.keys(exposed), ['spindle']);
  const bridge = exposed.spindle as Record<string, (...a: unknown[]) => unknown>;
  assert.deepEqual(Object.keys(bridge).sort(), ['onMessage', 'pickFile', 'send', 'transport', 'vncClose', 'vncOpen', 'vncSend']);
  bridge.send('{"kind":"call"}');
  bridge.send({ not: 'a string' });
  assert.deepEqual(sent, [[IPC.api, '{"kind":"call"}']]);
  const got: unknown[] = [];
  bridge.onMessage((m: unknown) => got.push(m));
  renderer.emit(IPC.api, {}, { kind: 'event', id: 1, event: 2 });
  assert.deepEqual(got, [{ kind: 'event', id: 1, event: 2 }]);
});
