// One handler per vhost-user request the backend serves (vhost-user.rst "Front-end message
// types"), as libvhost-user's vu_*_exec functions. A handler returns the reply payload (and fds)
// or nothing; it throws ProtocolError to end the connection, RequestRefused / RingRefused to
// refuse the request and go on. Session.handle calls them one at a time, in order.
import { posix, POLL_READABLE, closeQuietly } from '../native/posix.js';
import {
  ProtocolError,
  decodeConfig,
  decodeInflight,
  decodeMemTable,
  decodeState,
  decodeU64,
  decodeVringAddr,
  encodeConfig,
  encodeInflight,
  encodeState,
  encodeU64,
} from './codec.js';
import { InflightArea, inflightShapeProblem } from './inflight.js';
import { MemoryTable } from './memory-table.js';
import {
  BACKEND_PROTOCOL_FEATURES,
  F_PROTOCOL_FEATURES,
  MAX_RING_SIZE,
  Request,
  VRING_INDEX_MASK,
  VRING_NOFD_FLAG,
  type Message,
} from './protocol.js';
import { RequestRefused, RingRefused } from './refusals.js';
import { hex, takeFds, type Session } from './session.js';

export interface Reply {
  payload: Uint8Array;
  fds?: number[];
}

export type MessageHandler = (s: Session, msg: Message) => Reply | void | Promise<Reply | void>;

function getFeatures(s: Session): Reply {
  return { payload: encodeU64(s.device.deviceFeatures | F_PROTOCOL_FEATURES) };
}

function setFeatures(s: Session, msg: Message): void {
  const f = decodeU64(msg.payload);
  const offered = s.device.deviceFeatures | F_PROTOCOL_FEATURES;
  if (f & ~offered) throw new ProtocolError(`acknowledges features that were not offered (${hex(Number(f & ~offered))})`);
  s.features = f;
  s.device.setFeatures(f & ~F_PROTOCOL_FEATURES);
  // Without protocol features there is no SET_VRING_ENABLE: rings are enabled from the start.
  if (!(f & F_PROTOCOL_FEATURES))
    s.rings.forEach((r, i) => {
      r.enabled = true;
      s.tryStart(i);
    });
}

function setProtocolFeatures(s: Session, msg: Message): void {
  const f = decodeU64(msg.payload);
  if (f & ~BACKEND_PROTOCOL_FEATURES)
    throw new ProtocolError(`acknowledges protocol features that were not offered (${hex(Number(f & ~BACKEND_PROTOCOL_FEATURES))})`);
  s.protocolFeatures = f;
}

async function resetOwner(s: Session): Promise<void> {
  // Deprecated; the spec recommends treating it as "disable all rings".
  for (let i = 0; i < s.rings.length; i++) await s.stopRing(i);
}

async function setMemTable(s: Session, msg: Message): Promise<void> {
  const descs = decodeMemTable(msg.payload);
  const fds = takeFds(msg);
  // The device contract: every queue is stopped before the memory changes under it.
  const wasRunning = s.rings.map((r) => r.running);
  for (let i = 0; i < s.rings.length; i++) await s.stopRing(i);
  const table = MemoryTable.map(descs, fds);
  // A device may first finish I/O still pointing into the old table (retried parked writes).
  await s.device.setMemory(table.regions);
  s.memory.unmap();
  s.memory = table;
  s.host.log(`guest memory: ${table.regions.map((r) => `${hex(r.guestAddr)}+${hex(r.size)}`).join(', ')}`);
  wasRunning.forEach((was, i) => was && s.tryStart(i));
}

function setVringNum(s: Session, msg: Message): void {
  const { index, num } = decodeState(msg.payload);
  const ring = s.rings[s.ringIndex(index)]!;
  if (num < 1 || num > MAX_RING_SIZE || (num & (num - 1)) !== 0)
    throw new RingRefused(index, `ring ${index}: size ${num} is not a power of two up to ${MAX_RING_SIZE}`);
  ring.num = num;
}

function setVringAddr(s: Session, msg: Message): void {
  const addr = decodeVringAddr(msg.payload);
  const ring = s.rings[s.ringIndex(addr.index)]!;
  ring.addr = addr;
  for (const [what, a] of [
    ['descriptor table', addr.descAddr],
    ['available ring', addr.availAddr],
    ['used ring', addr.usedAddr],
  ] as const) {
    if (s.memory.frontendToGuest(a, 1) === null)
      throw new RingRefused(addr.index, `ring ${addr.index}: the ${what} address ${hex(a)} is not in the guest memory table`);
  }
  // New addresses are a new setup of the ring: an earlier refusal no longer applies.
  if (!ring.running) ring.broken = null;
}

function setVringBase(s: Session, msg: Message): void {
  const { index, num } = decodeState(msg.payload);
  const ring = s.rings[s.ringIndex(index)]!;
  if (num > 0xffff) throw new RingRefused(index, `ring ${index}: base ${num} is not a split-ring index (0..65535)`);
  ring.base = num;
}

async function getVringBase(s: Session, msg: Message): Promise<Reply> {
  const { index } = decodeState(msg.payload);
  const i = s.ringIndex(index);
  await s.stopRing(i);
  const ring = s.rings[i]!;
  // Stopped: the frontend sets kick and call again before restarting it.
  ring.kickWatch?.stop();
  ring.kickWatch = null;
  const kick = ring.kickFd,
    call = ring.callFd;
  ring.kickFd = -1;
  ring.callFd = -1;
  closeQuietly(kick);
  closeQuietly(call);
  ring.broken = null;
  return { payload: encodeState(i, ring.base) };
}

function setVringKick(s: Session, msg: Message): void {
  const v = Number(decodeU64(msg.payload) & 0xffffn);
  const i = s.ringIndex(v & VRING_INDEX_MASK);
  const ring = s.rings[i]!;
  if (v & VRING_NOFD_FLAG) throw new RingRefused(i, `ring ${i}: polling without a kick eventfd is not supported`);
  const [fd] = takeFds(msg);
  ring.kickWatch?.stop();
  closeQuietly(ring.kickFd);
  ring.kickFd = fd!;
  ring.kickWatch = posix.watchFd(
    fd!,
    POLL_READABLE,
    (_ev, _value, error) => {
      if (error !== undefined) s.breakRing(i, `ring ${i}: its kick eventfd failed (errno ${-error})`);
      else if (ring.running) s.kickDevice(i);
    },
    true,
  );
  s.tryStart(i);
}

function setVringCallOrErr(s: Session, msg: Message): void {
  const v = Number(decodeU64(msg.payload) & 0xffffn);
  const ring = s.rings[s.ringIndex(v & VRING_INDEX_MASK)]!;
  const fd = v & VRING_NOFD_FLAG ? -1 : takeFds(msg)[0]!;
  const key = msg.request === Request.SET_VRING_CALL ? 'callFd' : 'errFd';
  const old = ring[key];
  ring[key] = fd;
  closeQuietly(old);
  // One interrupt on every new call fd (libvhost-user does the same "in case of I/O hang
  // after reconnecting"): used entries published while the frontend was not listening
  // (a backend finishing its last requests after QEMU dropped the connection, or killed
  // between publishing used->idx and signalling) were never announced, and with EVENT_IDX
  // the guest would never be interrupted for them again. A spurious interrupt is harmless.
  if (key === 'callFd' && fd >= 0) {
    try {
      posix.eventfdWrite(fd);
    } catch (err) {
      throw new ProtocolError(`ring ${v & VRING_INDEX_MASK}: its call file descriptor cannot be signalled (${(err as Error).message})`);
    }
  }
}

async function setVringEnable(s: Session, msg: Message): Promise<void> {
  const { index, num } = decodeState(msg.payload);
  const i = s.ringIndex(index);
  if (num > 1) throw new ProtocolError(`ring ${i}: enable value ${num} is neither 0 nor 1`);
  s.rings[i]!.enabled = num === 1;
  if (num === 1) s.tryStart(i);
  else await s.stopRing(i);
}

function getConfig(s: Session, msg: Message): Reply {
  const c = decodeConfig(msg.payload);
  try {
    return { payload: encodeConfig(c.offset, c.size, c.flags, s.device.readConfig(c.offset, c.size)) };
  } catch (err) {
    // An empty reply is the protocol's way of saying "error".
    s.host.log(`GET_CONFIG refused: ${(err as Error).message}`);
    return { payload: new Uint8Array(0) };
  }
}

function setConfig(s: Session, msg: Message): void {
  const c = decodeConfig(msg.payload);
  try {
    s.device.writeConfig(c.offset, c.data);
  } catch (err) {
    throw new RequestRefused((err as Error).message);
  }
}

function getInflightFd(s: Session, msg: Message): Reply {
  const d = decodeInflight(msg.payload);
  const problem = inflightShapeProblem(d.numQueues, d.queueSize, s.device.numQueues);
  if (problem) {
    s.host.log(`GET_INFLIGHT_FD refused: ${problem}`);
    return { payload: encodeInflight({ mmapSize: 0, mmapOffset: 0, numQueues: d.numQueues, queueSize: d.queueSize }) };
  }
  const area = InflightArea.allocate(d.numQueues, d.queueSize);
  s.inflight?.close();
  s.inflight = area;
  return { payload: encodeInflight(area.desc), fds: [area.fd] };
}

function setInflightFd(s: Session, msg: Message): void {
  const d = decodeInflight(msg.payload);
  const [fd] = takeFds(msg);
  const problem = inflightShapeProblem(d.numQueues, d.queueSize, s.device.numQueues);
  if (problem) {
    closeQuietly(fd);
    throw new RequestRefused(problem);
  }
  let area: InflightArea;
  try {
    area = InflightArea.adopt(fd!, d);
  } catch (err) {
    throw new RequestRefused(`the inflight area cannot be mapped: ${(err as Error).message}`);
  }
  s.inflight?.close();
  s.inflight = area;
  // The frontend kept this area across a reconnect: requests in it are resubmitted as rings start.
  s.host.log(`inflight area handed back: ${d.numQueues} queue(s) of ${d.queueSize}`);
}

function setBackendReqFd(s: Session, msg: Message): void {
  const [fd] = takeFds(msg);
  closeQuietly(s.backendReqFd);
  s.backendReqFd = fd!;
}

/** The requests served, by code; checkBackendMessage lets no other through. */
export const MESSAGE_HANDLERS: ReadonlyMap<number, MessageHandler> = new Map<number, MessageHandler>([
  [Request.GET_FEATURES, getFeatures],
  [Request.SET_FEATURES, setFeatures],
  [Request.GET_PROTOCOL_FEATURES, () => ({ payload: encodeU64(BACKEND_PROTOCOL_FEATURES) })],
  [Request.SET_PROTOCOL_FEATURES, setProtocolFeatures],
  [Request.SET_OWNER, (s) => s.host.own(s)],
  [Request.RESET_OWNER, resetOwner],
  [Request.GET_QUEUE_NUM, (s) => ({ payload: encodeU64(s.device.numQueues) })],
  [Request.SET_MEM_TABLE, setMemTable],
  [Request.SET_VRING_NUM, setVringNum],
  [Request.SET_VRING_ADDR, setVringAddr],
  [Request.SET_VRING_BASE, setVringBase],
  [Request.GET_VRING_BASE, getVringBase],
  [Request.SET_VRING_KICK, setVringKick],
  [Request.SET_VRING_CALL, setVringCallOrErr],
  [Request.SET_VRING_ERR, setVringCallOrErr],
  [Request.SET_VRING_ENABLE, setVringEnable],
  [Request.GET_CONFIG, getConfig],
  [Request.SET_CONFIG, setConfig],
  [Request.GET_INFLIGHT_FD, getInflightFd],
  [Request.SET_INFLIGHT_FD, setInflightFd],
  [Request.SET_BACKEND_REQ_FD, setBackendReqFd],
]);
