// vhost-user codec and message reader: payload layouts, shape checks, and property tests over
// arbitrary byte streams (nothing but ProtocolError may ever come out of hostile input); the
// properties live in tests/fuzz/targets/vhost-user-codec.ts, shared with `npm run fuzz`.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import {
  ProtocolError,
  checkBackendMessage,
  decodeConfig,
  decodeInflight,
  decodeMemTable,
  decodeVringAddr,
  encodeConfig,
  encodeInflight,
  encodeMemTable,
  encodeState,
  encodeU64,
  encodeVringAddr,
} from '../../electron/dataplane/vhost-user/codec.js';
import { readerReassembly, hostileBytes } from '../fuzz/targets/vhost-user-codec.js';
import { runTarget } from '../fuzz/target.js';
import { Request, VRING_NOFD_FLAG, type Message } from '../../electron/dataplane/vhost-user/protocol.js';

test('payload layouts round-trip', () => {
  const regions = [
    { guestAddr: 0, size: 0xa0000, frontendAddr: 0x7f0000000000, mmapOffset: 0 },
    { guestAddr: 0xc0000, size: 0xff40000, frontendAddr: 0x7f00000c0000, mmapOffset: 0xc0000 },
  ];
  assert.deepEqual(decodeMemTable(encodeMemTable(regions)), regions);
  const addr = { index: 1, flags: 0, descAddr: 0x1000, usedAddr: 0x3000, availAddr: 0x2000, logAddr: 0 };
  assert.deepEqual(decodeVringAddr(encodeVringAddr(addr)), addr);
  const inflight = { mmapSize: 8448, mmapOffset: 0, numQueues: 2, queueSize: 256 };
  assert.deepEqual(decodeInflight(encodeInflight(inflight)), inflight);
  const cfg = decodeConfig(encodeConfig(8, 4, 0, Uint8Array.of(1, 2, 3, 4)));
  assert.deepEqual([cfg.offset, cfg.size, [...cfg.data]], [8, 4, [1, 2, 3, 4]]);
});

test('addresses beyond 2^53 are refused with a sentence', () => {
  const p = encodeMemTable([{ guestAddr: 0, size: 4096, frontendAddr: 0, mmapOffset: 0 }]);
  new DataView(p.buffer).setBigUint64(8 + 16, 1n << 60n, true);
  assert.throws(
    () => decodeMemTable(p),
    (e: unknown) => e instanceof ProtocolError && /region 0 user address 0x1000000000000000 is beyond/.test(e.message),
  );
});

test('checkBackendMessage names each malformed shape', () => {
  const msg = (request: number, payload: Uint8Array = new Uint8Array(0), fds: number[] = [], flags = 1): Message => ({
    request,
    flags,
    payload,
    fds,
  });
  assert.equal(checkBackendMessage(msg(Request.GET_FEATURES)), null);
  assert.equal(checkBackendMessage(msg(Request.SET_VRING_CALL, encodeU64(VRING_NOFD_FLAG))), null, 'no-fd flag: no fd expected');
  assert.equal(checkBackendMessage(msg(Request.SET_VRING_KICK, encodeU64(0), [7])), null);
  const cases: [Message, RegExp][] = [
    [msg(Request.GET_FEATURES, new Uint8Array(8)), /GET_FEATURES: payload of 8 bytes, expected 0/],
    [msg(Request.SET_VRING_ADDR, new Uint8Array(39)), /SET_VRING_ADDR: payload of 39 bytes, expected 40/],
    [msg(77), /request 77 is not a request/],
    [msg(Request.SET_MEM_TABLE, new Uint8Array(4)), /shorter than the 8-byte region count/],
    [msg(Request.SET_MEM_TABLE, encodeMemTable([])), /has no regions/],
    [
      msg(Request.SET_MEM_TABLE, encodeMemTable([{ guestAddr: 0, size: 1, frontendAddr: 0, mmapOffset: 0 }]).subarray(0, 30)),
      /does not match 1 regions/,
    ],
    [
      msg(Request.SET_MEM_TABLE, encodeMemTable([{ guestAddr: 0, size: 1, frontendAddr: 0, mmapOffset: 0 }]), [3, 4]),
      /carries 2 file descriptors, expected 1 file descriptor/,
    ],
    [msg(Request.GET_CONFIG, new Uint8Array(8)), /shorter than the 12-byte config header/],
    [msg(Request.GET_CONFIG, encodeConfig(0, 300, 0)), /300 bytes is larger than the 256-byte config space/],
    [msg(Request.SET_CONFIG, encodeConfig(0, 8, 0).subarray(0, 16)), /does not match a config access of 8 bytes/],
    [
      msg(Request.SET_INFLIGHT_FD, encodeInflight({ mmapSize: 1, mmapOffset: 0, numQueues: 1, queueSize: 1 })),
      /carries no file descriptor, expected 1/,
    ],
    [msg(Request.GET_INFLIGHT_FD, new Uint8Array(12)), /not an inflight description/],
    [msg(Request.SET_VRING_NUM, encodeState(0, 1), [], 1 | 4), /marked as a reply/],
  ];
  for (const [m, re] of cases) assert.match(checkBackendMessage(m) ?? 'accepted', re);
});

test('the reader reassembles messages split anywhere, with fds kept on their message', async () => {
  await runTarget(readerReassembly, { numRuns: readerReassembly.bounded });
});

test('arbitrary bytes from a hostile peer yield messages or ProtocolError, nothing else', async () => {
  await runTarget(hostileBytes, { numRuns: hostileBytes.bounded });
});
