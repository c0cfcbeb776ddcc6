// Property targets for the vhost-user message reader and codec: messages split
// anywhere reassemble exactly; arbitrary bytes from a hostile peer yield messages or ProtocolError,
// nothing else. Bounded in tests/unit/vhost-user-codec.test.ts, long in `npm run fuzz`.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ProtocolError, checkBackendMessage, encodeMessage } from '../../../electron/dataplane/vhost-user/codec.js';
import { MessageReader, type Receive } from '../../../electron/dataplane/vhost-user/reader.js';
import { FLAG_NEED_REPLY, type Message } from '../../../electron/dataplane/vhost-user/protocol.js';
import type { FuzzTarget } from '../target.js';

/** A receive() over a byte stream delivered in the given chunk sizes (fds ride on the first chunk). */
export function streamOf(bytes: Uint8Array, chunks: number[], fdsAtStart: number[] = []): Receive {
  let pos = 0;
  let chunk = 0;
  let fds = fdsAtStart;
  let budget = chunks[0] ?? bytes.length;
  return (buf, off, len) => {
    if (pos >= bytes.length) return { bytes: 0, fds: [] };
    if (budget === 0) {
      chunk++;
      budget = chunks[chunk] ?? bytes.length;
      return null; // "would block" between chunks
    }
    const n = Math.min(len, budget, bytes.length - pos);
    buf.set(bytes.subarray(pos, pos + n), off);
    pos += n;
    budget -= n;
    const out = { bytes: n, fds };
    fds = [];
    return out;
  };
}

export function readAll(reader: MessageReader): Message[] {
  const out: Message[] = [];
  for (let i = 0; i < 10_000; i++) {
    const m = reader.next();
    if (m === 'eof') return out;
    if (m !== null) out.push(m);
  }
  throw new Error('reader did not finish');
}

export const readerReassembly: FuzzTarget<void> = {
  name: 'vhost-user-reader-reassembly',
  suite: 'unit',
  bounded: 300,
  property: () =>
    fc.property(
      fc.array(
        fc.record({ request: fc.constantFrom(1, 2, 5, 8, 9, 24), payload: fc.uint8Array({ maxLength: 300 }), needReply: fc.boolean() }),
        { minLength: 1, maxLength: 6 },
      ),
      fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 50 }),
      (msgs, chunks) => {
        // One socket "stream": concatenated messages; fds only on the first one (as one sendmsg).
        const encoded = msgs.map((m) => encodeMessage(m.request, m.needReply ? FLAG_NEED_REPLY : 0, m.payload));
        const total = new Uint8Array(encoded.reduce((n, e) => n + e.length, 0));
        let o = 0;
        for (const e of encoded) {
          total.set(e, o);
          o += e.length;
        }
        // Chunks never span a message boundary on a real socket read (we ask for at most the rest).
        const got = readAll(new MessageReader(streamOf(total, chunks, [100, 101])));
        assert.equal(got.length, msgs.length);
        got.forEach((m, i) => {
          assert.equal(m.request, msgs[i]!.request);
          assert.deepEqual([...m.payload], [...msgs[i]!.payload]);
          assert.equal((m.flags & FLAG_NEED_REPLY) !== 0, msgs[i]!.needReply);
        });
        assert.deepEqual(got[0]!.fds, [100, 101]);
        got.slice(1).forEach((m) => assert.deepEqual(m.fds, []));
      },
    ),
};

export const hostileBytes: FuzzTarget<void> = {
  name: 'vhost-user-hostile-bytes',
  suite: 'unit',
  bounded: 1000,
  property: () =>
    fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.integer({ min: 1, max: 200 }), { maxLength: 20 }), (bytes, chunks) => {
      const reader = new MessageReader(streamOf(bytes, chunks));
      try {
        for (const m of readAll(reader)) {
          const problem = checkBackendMessage(m);
          assert.ok(problem === null || typeof problem === 'string');
        }
      } catch (err) {
        assert.ok(err instanceof ProtocolError, `unexpected ${String(err)}`);
      }
    }),
};

export const codecTargets = [readerReassembly, hostileBytes];
