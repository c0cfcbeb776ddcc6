// `spindle serve --port N` and the VM display path the UI's noVNC uses, against a real QEMU: serve
// listens on the port it was given (the page and the API's WebSocket answer there), and the
// WebSocket at /vnc/<vmId> carries a real RFB session to QEMU's VNC socket: the version and
// security handshake, ServerInit with the VGA's size, and a framebuffer update of the screen
// (the firmware's text: the VM boots from a disk it does not have, so it costs no guest boot).
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { isolatedEnv } from '../lib/api.js';
import { spawnServe, type ServeProcess } from '../lib/serve-process.js';
import { waitFor, within } from '../lib/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'spindle-vnc-'));
const env = isolatedEnv(dir);
let serve: ServeProcess | undefined;
after(async () => {
  await serve?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Bytes from a binary WebSocket, read as a stream: `take(n)` resolves with the next n bytes. */
class WsStream {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private closed: string | null = null;
  constructor(ws: WebSocket) {
    ws.on('message', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    ws.on('close', (code, reason) => {
      this.closed = `closed (${code} ${String(reason)})`;
      this.wake?.();
    });
  }
  take(n: number, what: string): Promise<Buffer> {
    const read = async (): Promise<Buffer> => {
      while (this.buf.length < n) {
        if (this.closed) throw new Error(`${what}: the WebSocket ${this.closed} after ${this.buf.length} of ${n} bytes`);
        await new Promise<void>((r) => (this.wake = r));
      }
      const out = this.buf.subarray(0, n);
      this.buf = this.buf.subarray(n);
      return out;
    };
    return within(read(), { timeoutMs: 60_000, what });
  }
}

interface Reply {
  ok: boolean;
  result?: { config: { id: string }; state: string };
  error?: { message: string };
}

async function apiCall(port: number, token: string, method: string, params: unknown): Promise<Reply> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api?token=${token}`);
  try {
    await within(new Promise((ok, fail) => ws.once('open', ok).once('error', fail)), {
      timeoutMs: 30_000,
      what: 'the API WebSocket to open',
    });
    return await within(
      new Promise<Reply>((ok) => {
        ws.on('message', (d) => ok(JSON.parse(String(d)) as Reply));
        ws.send(JSON.stringify({ kind: 'call', id: 1, method, params }));
      }),
      { timeoutMs: 60_000, what: `the answer to ${method}` },
    );
  } finally {
    ws.close();
  }
}

test('serve --port N listens on N; the /vnc/<vm> WebSocket carries an RFB session with real QEMU: handshake, ServerInit, a framebuffer update', async () => {
  const port = await freePort();
  serve = spawnServe(env, ['--port', String(port)]);
  const url = new URL(await serve.listening());
  assert.equal(Number(url.port), port, `serve listens on the port it was given: ${url}`);
  const token = url.searchParams.get('token')!;
  const page = await fetch(url);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<html/i, 'the UI is served there');
  assert.equal((await apiCall(port, token, 'app.info', {})).ok, true, 'the API answers on that port');

  const created = await apiCall(port, token, 'vm.create', {
    name: 'screen',
    memoryMiB: 64,
    display: 'vnc',
    network: { user: false },
    boot: { kind: 'disk' },
  });
  assert.ok(created.ok, JSON.stringify(created.error));
  const id = created.result!.config.id;
  const started = await apiCall(port, token, 'vm.start', { id });
  assert.ok(started.ok && started.result!.state === 'running', JSON.stringify(started));

  // Without the token the display is refused; with it, RFB 3.8 as noVNC speaks it.
  const refused = new WebSocket(`ws://127.0.0.1:${port}/vnc/${id}`);
  await within(
    new Promise<void>((ok, fail) => {
      refused.once('open', () => fail(new Error('the display opened without the token')));
      refused.once('error', () => ok());
    }),
    { timeoutMs: 30_000, what: 'the display without a token to be refused' },
  );
  const ws = new WebSocket(`ws://127.0.0.1:${port}/vnc/${id}?token=${token}`);
  const rfb = new WsStream(ws);
  await within(new Promise((ok, fail) => ws.once('open', ok).once('error', fail)), {
    timeoutMs: 30_000,
    what: 'the VNC WebSocket to open',
  });
  try {
    const version = (await rfb.take(12, "QEMU's RFB version")).toString('latin1');
    assert.match(version, /^RFB 003\.00[378]\n$/);
    ws.send(Buffer.from('RFB 003.008\n'));
    const count = (await rfb.take(1, 'the number of security types'))[0]!;
    assert.ok(count > 0, 'QEMU offers a security type (0 would be a refusal)');
    const types = [...(await rfb.take(count, 'the security types'))];
    assert.ok(types.includes(1), `security None offered: ${types}`);
    ws.send(Buffer.from([1]));
    assert.equal((await rfb.take(4, 'the security result')).readUInt32BE(0), 0, 'security handshake OK');
    ws.send(Buffer.from([1])); // ClientInit, shared
    const init = await rfb.take(24, 'ServerInit');
    const [width, height, bpp] = [init.readUInt16BE(0), init.readUInt16BE(2), init[4]!];
    assert.ok(width >= 320 && height >= 200, `a VGA screen: ${width}x${height}`);
    assert.ok([8, 16, 32].includes(bpp), `bits per pixel ${bpp}`);
    await rfb.take(init.readUInt32BE(20), 'the desktop name');

    // FramebufferUpdateRequests for the whole screen (not incremental) until one shows something
    // other than one flat colour: the firmware's text, once it has drawn it.
    const request = (): void => {
      const req = Buffer.alloc(10);
      req[0] = 3;
      req.writeUInt16BE(width, 6);
      req.writeUInt16BE(height, 8);
      ws.send(req);
    };
    let updates = 0;
    await waitFor(
      async () => {
        request();
        const head = await rfb.take(4, 'a FramebufferUpdate');
        assert.equal(head[0], 0, 'message type FramebufferUpdate');
        const rects = head.readUInt16BE(2);
        assert.ok(rects >= 1, 'at least one rectangle');
        updates++;
        let drawn = false;
        for (let i = 0; i < rects; i++) {
          const rect = await rfb.take(12, `rectangle ${i}`);
          const [x, y, w, h, encoding] = [
            rect.readUInt16BE(0),
            rect.readUInt16BE(2),
            rect.readUInt16BE(4),
            rect.readUInt16BE(6),
            rect.readInt32BE(8),
          ];
          assert.equal(encoding, 0, 'raw encoding (the only one asked for)');
          assert.ok(x + w <= width && y + h <= height, `rectangle ${w}x${h}+${x}+${y} inside ${width}x${height}`);
          const pixels = await rfb.take(w * h * (bpp / 8), `the pixels of rectangle ${i}`);
          drawn ||= pixels.some((b) => b !== pixels[0]);
        }
        return drawn;
      },
      {
        timeoutMs: 120_000,
        intervalMs: 500,
        what: 'a framebuffer update that shows the screen drawn',
        detail: () => `${updates} updates read`,
      },
    );
  } finally {
    ws.close();
  }
  assert.equal((await apiCall(port, token, 'vm.forceOff', { id })).ok, true);
});
