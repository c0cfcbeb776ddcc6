import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qmpChunks, qmpRandomBytes } from '../fuzz/targets/qmp.js';
import { runTarget } from '../fuzz/target.js';
import { QmpFramer, QmpClient } from '../../electron/host/vm/qmp.js';
import { SpindleError } from '../../electron/shared/errors.js';

const enc = (s: string) => new TextEncoder().encode(s);

test('framer splits lines across arbitrary chunk boundaries', async () => {
  await runTarget(qmpChunks, { numRuns: qmpChunks.bounded });
});

test('framer rejects non-JSON, non-object, non-UTF-8 and oversized lines with PROTOCOL_ERROR', () => {
  const bad = [enc('not json\n'), enc('[1,2]\n'), enc('42\n'), new Uint8Array([0xff, 0xfe, 0x0a])];
  for (const b of bad)
    assert.throws(
      () => new QmpFramer().push(b),
      (e: SpindleError) => e.code === 'PROTOCOL_ERROR',
    );
  const f = new QmpFramer(1024);
  assert.throws(
    () => f.push(enc('{"a":"' + 'x'.repeat(2000))),
    (e: SpindleError) => e.code === 'PROTOCOL_ERROR' && /longer than 1024/.test(e.message),
  );
});

test('framer never throws anything but SpindleError on random bytes', async () => {
  await runTarget(qmpRandomBytes, { numRuns: qmpRandomBytes.bounded });
});

/** A scripted QMP peer on a unix socket (the real-QEMU test is in tests/guest/vm-qmp.test.ts). */
async function fakeQemu(script: (sock: Socket) => void): Promise<{ path: string; close(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-qmp-'));
  const path = join(dir, 'qmp.sock');
  const server = createServer(script);
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path,
    close: () => {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('client: greeting, capabilities, ids matched out of order, errors and events', async () => {
  const peer = await fakeQemu((sock) => {
    sock.write('{"QMP": {"version": {}, "capabilities": []}}\r\n');
    let buf = '';
    sock.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const m = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (m.execute === 'qmp_capabilities') sock.write(JSON.stringify({ return: {}, id: m.id }) + '\r\n');
        if (m.execute === 'slow') setTimeout(() => sock.write(JSON.stringify({ return: 'slow', id: m.id }) + '\r\n'), 30);
        if (m.execute === 'fast')
          sock.write(JSON.stringify({ event: 'STOP', data: {} }) + '\r\n' + JSON.stringify({ return: 'fast', id: m.id }) + '\r\n');
        if (m.execute === 'bad') sock.write(JSON.stringify({ error: { class: 'GenericError', desc: 'no such thing' }, id: m.id }) + '\r\n');
        if (m.execute === 'stray')
          sock.write(JSON.stringify({ return: 'x', id: 999 }) + '\r\n' + JSON.stringify({ return: 'ok', id: m.id }) + '\r\n');
      }
    });
  });
  try {
    const c = await QmpClient.connect(peer.path);
    const events: string[] = [];
    c.on('event', (e) => events.push(e.event));
    const [slow, fast] = await Promise.all([c.execute('slow'), c.execute('fast')]);
    assert.equal(slow, 'slow');
    assert.equal(fast, 'fast');
    assert.deepEqual(events, ['STOP']);
    await assert.rejects(c.execute('bad'), (e: SpindleError) => e.code === 'QEMU_FAILED' && /refused 'bad': no such thing/.test(e.message));
    assert.equal(await c.execute('stray'), 'ok');
    c.close();
    await assert.rejects(c.execute('fast'), SpindleError);
  } finally {
    peer.close();
  }
});

test('client: malformed output from the peer fails pending commands and closes', async () => {
  const peer = await fakeQemu((sock) => {
    sock.write('{"QMP": {}}\r\n');
    sock.on('data', (d) => {
      const m = JSON.parse(String(d).trim());
      if (m.execute === 'qmp_capabilities') sock.write(JSON.stringify({ return: {}, id: m.id }) + '\r\n');
      else sock.write('this is garbage\r\n');
    });
  });
  try {
    const c = await QmpClient.connect(peer.path);
    const closed = new Promise((r) => c.once('close', r));
    await assert.rejects(c.execute('anything'), (e: SpindleError) => e.code === 'PROTOCOL_ERROR');
    await closed;
    assert.equal(c.isOpen, false);
  } finally {
    peer.close();
  }
});

test('client: a peer that never greets times out with a sentence', async () => {
  const peer = await fakeQemu(() => {});
  try {
    await assert.rejects(
      QmpClient.connect(peer.path, { timeoutMs: 200 }),
      (e: SpindleError) => e.code === 'QEMU_FAILED' && /did not answer/.test(e.message),
    );
  } finally {
    peer.close();
  }
});

test('client: connecting to a missing socket fails with a sentence', async () => {
  await assert.rejects(
    QmpClient.connect('/nonexistent/qmp.sock'),
    (e: SpindleError) => e.code === 'QEMU_FAILED' && /Cannot connect/.test(e.message),
  );
});
