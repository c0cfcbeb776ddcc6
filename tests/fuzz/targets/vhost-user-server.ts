// Property target: random vhost-user message streams (well-formed headers with random request
// codes, payloads and fds, plus raw garbage) against a live server. After every
// stream the server still serves a proper frontend; after the run no fd leaked. Bounded in
// tests/native/vhost-user-fuzz.test.ts, long in `npm run fuzz`.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { VhostUserServer } from '../../../electron/dataplane/vhost-user/server.js';
import { VhostUserFrontend } from '../../../electron/tools/vhost-user-frontend.js';
import { encodeMessage } from '../../../electron/dataplane/vhost-user/codec.js';
import { posix, closeQuietly } from '../../../electron/dataplane/native/posix.js';
import { RecordingDevice } from '../../native/vhost-user-double.js';
import type { FuzzTarget } from '../target.js';

const openFds = (): number => readdirSync('/proc/self/fd').length;
const settle = async (server: VhostUserServer): Promise<void> => {
  for (let i = 0; i < 400 && server.connected; i++) await new Promise((r) => setTimeout(r, 5));
};

const anyMessage = fc.record({
  request: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 0xffffffff })),
  flags: fc.constantFrom(1, 1 | 8, 1 | 4, 0, 3),
  payload: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ minLength: 264, maxLength: 300 })),
  // Now and then more fds than one message may carry (32): the native recvmsg must drop them all (MSG_CTRUNC).
  fds: fc.oneof({ arbitrary: fc.integer({ min: 0, max: 3 }), weight: 8 }, { arbitrary: fc.integer({ min: 30, max: 40 }), weight: 1 }),
});
// Requests with the payload size they need and random contents: these get past the shape check
// and reach the handlers (ring indexes, addresses, features, config offsets all random).
const sizes: [number, number, number][] = [
  [1, 0, 0],
  [2, 8, 0],
  [3, 0, 0],
  [4, 0, 0],
  [8, 8, 0],
  [9, 40, 0],
  [10, 8, 0],
  [11, 8, 0],
  [12, 8, 1],
  [13, 8, 1],
  [14, 8, 1],
  [15, 0, 0],
  [16, 8, 0],
  [17, 0, 0],
  [18, 8, 0],
  [31, 24, 0],
  [32, 24, 1],
  [5, 40, 1],
];
const shapedMessage = fc.constantFrom(...sizes).chain(([request, size, fds]) =>
  fc.record({
    request: fc.constant(request),
    flags: fc.constantFrom(1, 1 | 8),
    payload: fc.uint8Array({ minLength: size, maxLength: size }).map((p) => {
      // Small ring indexes and region counts half of the time, so the deeper paths run too.
      if (p.length >= 8 && p[0]! & 1) {
        p[1] = p[2] = p[3] = 0;
        p[0] = p[0]! & 3;
      }
      if (request === 5) {
        p.fill(0, 0, 8);
        p[0] = 1;
      }
      return p;
    }),
    fds: fc.constant(fds),
  }),
);
const message = fc.oneof(anyMessage, shapedMessage, shapedMessage);

interface Ctx {
  dir: string;
  server: VhostUserServer;
  baseline: number;
}

export const serverStreams: FuzzTarget<Ctx> = {
  name: 'vhost-user-server-streams',
  suite: 'native',
  bounded: 150,
  async setup() {
    const dir = mkdtempSync(join(tmpdir(), 'spindle-vhu-fuzz-'));
    const server = VhostUserServer.listen({ socketPath: join(dir, 'f.sock'), device: new RecordingDevice(2) });
    // Warm up lazily created handles so the fd count is stable.
    const warm = VhostUserFrontend.connect(server.socketPath);
    await warm.getQueueNum();
    warm.close();
    await settle(server);
    return { dir, server, baseline: openFds() };
  },
  property: ({ server }) =>
    fc.asyncProperty(fc.array(message, { maxLength: 8 }), fc.option(fc.uint8Array({ maxLength: 100 })), async (msgs, garbage) => {
      const fd = posix.connectUnix(server.socketPath);
      try {
        for (const m of msgs) {
          const bytes = encodeMessage(m.request, m.flags, m.payload);
          if (m.flags === 0 || m.flags === 3) new DataView(bytes.buffer).setUint32(4, m.flags, true);
          const fds = Array.from({ length: m.fds }, () => posix.eventfdCreate());
          try {
            if (posix.sendMsg(fd, bytes, 0, bytes.length, fds) < 0) break;
          } catch {
            break; // the server already hung up
          } finally {
            fds.forEach(closeQuietly);
          }
        }
        if (garbage)
          try {
            posix.sendMsg(fd, garbage, 0, garbage.length);
          } catch {
            /* closed */
          }
        await new Promise((r) => setTimeout(r, 2));
      } finally {
        closeQuietly(fd);
      }
      await settle(server);
      const fe = VhostUserFrontend.connect(server.socketPath);
      try {
        assert.equal(await fe.getQueueNum(), 2);
      } finally {
        fe.close();
      }
      await settle(server);
    }),
  after({ baseline }) {
    assert.ok(openFds() <= baseline, `fds leaked: ${openFds()} open, ${baseline} before`);
  },
  async teardown({ server, dir }) {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  },
};
