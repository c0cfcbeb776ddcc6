// vhost-user message encoding, payload layouts, and validation of what a peer sends.
// Everything here treats its input as hostile: a malformed message becomes a ProtocolError
// with a sentence saying what was wrong, never an exception from deep inside a DataView.
import { SpindleError } from '../../shared/errors.js';
import {
  CONFIG_HEADER_SIZE,
  FLAG_NEED_REPLY,
  FLAG_REPLY,
  HEADER_SIZE,
  INFLIGHT_MIN_SIZE,
  INFLIGHT_SIZE,
  MAX_CONFIG_SIZE,
  MAX_MEM_REGIONS,
  MAX_PAYLOAD,
  MEM_REGION_SIZE,
  Request,
  VERSION,
  VERSION_MASK,
  VRING_NOFD_FLAG,
  requestName,
  type InflightDesc,
  type MemRegionDesc,
  type Message,
  type VringAddrDesc,
} from './protocol.js';

export class ProtocolError extends SpindleError {
  constructor(reason: string) {
    super('PROTOCOL_ERROR', reason);
  }
}

export interface Header {
  request: number;
  flags: number;
  size: number;
}

export function parseHeader(bytes: Uint8Array): Header {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  const header = { request: dv.getUint32(0, true), flags: dv.getUint32(4, true), size: dv.getUint32(8, true) };
  if ((header.flags & VERSION_MASK) !== VERSION) {
    throw new ProtocolError(`${requestName(header.request)}: unsupported protocol version ${header.flags & VERSION_MASK} (expected 1)`);
  }
  if (header.size > MAX_PAYLOAD) {
    throw new ProtocolError(
      `${requestName(header.request)}: payload of ${header.size} bytes is larger than any vhost-user message (${MAX_PAYLOAD})`,
    );
  }
  return header;
}

export function encodeMessage(request: number, flags: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, request, true);
  dv.setUint32(4, (flags & ~VERSION_MASK) | VERSION, true);
  dv.setUint32(8, payload.length, true);
  out.set(payload, HEADER_SIZE);
  return out;
}

const view = (p: Uint8Array): DataView => new DataView(p.buffer, p.byteOffset, p.byteLength);

/** A u64 from the wire as a number; addresses and sizes above 2^53 are refused. */
function safeU64(dv: DataView, offset: number, what: string): number {
  const v = dv.getBigUint64(offset, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(`${what} 0x${v.toString(16)} is beyond the addresses Spindle supports`);
  return Number(v);
}

// ---- payload layouts ----

export const encodeU64 = (v: bigint | number): Uint8Array => {
  const p = new Uint8Array(8);
  view(p).setBigUint64(0, BigInt(v), true);
  return p;
};
export const decodeU64 = (p: Uint8Array): bigint => view(p).getBigUint64(0, true);

export const encodeState = (index: number, num: number): Uint8Array => {
  const p = new Uint8Array(8);
  view(p).setUint32(0, index, true);
  view(p).setUint32(4, num, true);
  return p;
};
export const decodeState = (p: Uint8Array): { index: number; num: number } => ({
  index: view(p).getUint32(0, true),
  num: view(p).getUint32(4, true),
});

export function encodeVringAddr(a: VringAddrDesc): Uint8Array {
  const p = new Uint8Array(40);
  const dv = view(p);
  dv.setUint32(0, a.index, true);
  dv.setUint32(4, a.flags, true);
  dv.setBigUint64(8, BigInt(a.descAddr), true);
  dv.setBigUint64(16, BigInt(a.usedAddr), true);
  dv.setBigUint64(24, BigInt(a.availAddr), true);
  dv.setBigUint64(32, BigInt(a.logAddr), true);
  return p;
}
export function decodeVringAddr(p: Uint8Array): VringAddrDesc {
  const dv = view(p);
  return {
    index: dv.getUint32(0, true),
    flags: dv.getUint32(4, true),
    descAddr: safeU64(dv, 8, 'descriptor table address'),
    usedAddr: safeU64(dv, 16, 'used ring address'),
    availAddr: safeU64(dv, 24, 'available ring address'),
    // The log address is only meaningful while migrating (not offered): keep it, never use it.
    logAddr: Number(dv.getBigUint64(32, true) & BigInt(Number.MAX_SAFE_INTEGER)),
  };
}

export function encodeMemTable(regions: readonly MemRegionDesc[]): Uint8Array {
  const p = new Uint8Array(8 + MEM_REGION_SIZE * regions.length);
  const dv = view(p);
  dv.setUint32(0, regions.length, true);
  regions.forEach((r, i) => {
    const o = 8 + i * MEM_REGION_SIZE;
    dv.setBigUint64(o, BigInt(r.guestAddr), true);
    dv.setBigUint64(o + 8, BigInt(r.size), true);
    dv.setBigUint64(o + 16, BigInt(r.frontendAddr), true);
    dv.setBigUint64(o + 24, BigInt(r.mmapOffset), true);
  });
  return p;
}
export function decodeMemTable(p: Uint8Array): MemRegionDesc[] {
  const dv = view(p);
  const n = dv.getUint32(0, true);
  const regions: MemRegionDesc[] = [];
  for (let i = 0; i < n; i++) {
    const o = 8 + i * MEM_REGION_SIZE;
    regions.push({
      guestAddr: safeU64(dv, o, `region ${i} guest address`),
      size: safeU64(dv, o + 8, `region ${i} size`),
      frontendAddr: safeU64(dv, o + 16, `region ${i} user address`),
      mmapOffset: safeU64(dv, o + 24, `region ${i} mmap offset`),
    });
  }
  return regions;
}

export interface ConfigAccess {
  offset: number;
  size: number;
  flags: number;
  data: Uint8Array;
}
export function encodeConfig(offset: number, size: number, flags: number, data?: Uint8Array): Uint8Array {
  const p = new Uint8Array(CONFIG_HEADER_SIZE + size);
  const dv = view(p);
  dv.setUint32(0, offset, true);
  dv.setUint32(4, size, true);
  dv.setUint32(8, flags, true);
  if (data) p.set(data.subarray(0, size), CONFIG_HEADER_SIZE);
  return p;
}
export function decodeConfig(p: Uint8Array): ConfigAccess {
  const dv = view(p);
  const size = dv.getUint32(4, true);
  return {
    offset: dv.getUint32(0, true),
    size,
    flags: dv.getUint32(8, true),
    data: p.subarray(CONFIG_HEADER_SIZE, CONFIG_HEADER_SIZE + size),
  };
}

export function encodeInflight(d: InflightDesc): Uint8Array {
  const p = new Uint8Array(INFLIGHT_SIZE);
  const dv = view(p);
  dv.setBigUint64(0, BigInt(d.mmapSize), true);
  dv.setBigUint64(8, BigInt(d.mmapOffset), true);
  dv.setUint16(16, d.numQueues, true);
  dv.setUint16(18, d.queueSize, true);
  return p;
}
export function decodeInflight(p: Uint8Array): InflightDesc {
  const dv = view(p);
  return {
    mmapSize: safeU64(dv, 0, 'inflight area size'),
    mmapOffset: safeU64(dv, 8, 'inflight area offset'),
    numQueues: dv.getUint16(16, true),
    queueSize: dv.getUint16(18, true),
  };
}

// ---- what a backend accepts ----

type Shape = { size: number | ((n: number, p: Uint8Array) => string | null); fds: 0 | 1 | 'regions' | 'vring' };

/** Expected payload size and fd count of every request a backend answers. */
const backendShapes = new Map<number, Shape>([
  [Request.GET_FEATURES, { size: 0, fds: 0 }],
  [Request.SET_FEATURES, { size: 8, fds: 0 }],
  [Request.SET_OWNER, { size: 0, fds: 0 }],
  [Request.RESET_OWNER, { size: 0, fds: 0 }],
  [Request.GET_PROTOCOL_FEATURES, { size: 0, fds: 0 }],
  [Request.SET_PROTOCOL_FEATURES, { size: 8, fds: 0 }],
  [Request.GET_QUEUE_NUM, { size: 0, fds: 0 }],
  [
    Request.SET_MEM_TABLE,
    {
      size: (n, p) => {
        if (n < 8) return `payload of ${n} bytes is shorter than the 8-byte region count`;
        const regions = view(p).getUint32(0, true);
        if (regions === 0) return 'the memory table has no regions';
        if (regions > MAX_MEM_REGIONS) return `the memory table has ${regions} regions, more than the ${MAX_MEM_REGIONS} allowed`;
        const want = 8 + regions * MEM_REGION_SIZE;
        return n === want ? null : `payload of ${n} bytes does not match ${regions} regions (${want} bytes)`;
      },
      fds: 'regions',
    },
  ],
  [Request.SET_VRING_NUM, { size: 8, fds: 0 }],
  [Request.SET_VRING_ADDR, { size: 40, fds: 0 }],
  [Request.SET_VRING_BASE, { size: 8, fds: 0 }],
  [Request.GET_VRING_BASE, { size: 8, fds: 0 }],
  [Request.SET_VRING_KICK, { size: 8, fds: 'vring' }],
  [Request.SET_VRING_CALL, { size: 8, fds: 'vring' }],
  [Request.SET_VRING_ERR, { size: 8, fds: 'vring' }],
  [Request.SET_VRING_ENABLE, { size: 8, fds: 0 }],
  [Request.SET_BACKEND_REQ_FD, { size: 0, fds: 1 }],
  [Request.GET_CONFIG, { size: configShape, fds: 0 }],
  [Request.SET_CONFIG, { size: configShape, fds: 0 }],
  [Request.GET_INFLIGHT_FD, { size: inflightShape, fds: 0 }],
  [Request.SET_INFLIGHT_FD, { size: inflightShape, fds: 1 }],
]);

function configShape(n: number, p: Uint8Array): string | null {
  if (n < CONFIG_HEADER_SIZE) return `payload of ${n} bytes is shorter than the ${CONFIG_HEADER_SIZE}-byte config header`;
  const size = view(p).getUint32(4, true);
  if (size > MAX_CONFIG_SIZE) return `config access of ${size} bytes is larger than the ${MAX_CONFIG_SIZE}-byte config space`;
  return n === CONFIG_HEADER_SIZE + size ? null : `payload of ${n} bytes does not match a config access of ${size} bytes`;
}

function inflightShape(n: number): string | null {
  return n >= INFLIGHT_MIN_SIZE && n <= INFLIGHT_SIZE
    ? null
    : `payload of ${n} bytes is not an inflight description (${INFLIGHT_SIZE} bytes)`;
}

/**
 * Why a message a frontend sent cannot be handled (a sentence), or null if its shape is right:
 * known request, not a reply, payload size and number of fds as the request needs.
 */
export function checkBackendMessage(msg: Message): string | null {
  const name = requestName(msg.request);
  const shape = backendShapes.get(msg.request);
  if (!shape) return `${name} is not a request Spindle's vhost-user backend knows`;
  if (msg.flags & FLAG_REPLY) return `${name} arrived marked as a reply; a frontend sends requests`;
  const n = msg.payload.length;
  const sizeProblem =
    typeof shape.size === 'number'
      ? n === shape.size
        ? null
        : `payload of ${n} bytes, expected ${shape.size}`
      : shape.size(n, msg.payload);
  if (sizeProblem) return `${name}: ${sizeProblem}`;
  let wantFds: number;
  if (shape.fds === 'regions') wantFds = view(msg.payload).getUint32(0, true);
  else if (shape.fds === 'vring') wantFds = view(msg.payload).getUint32(0, true) & VRING_NOFD_FLAG ? 0 : 1;
  else wantFds = shape.fds;
  if (msg.fds.length !== wantFds) {
    const what = (k: number) => (k === 0 ? 'no file descriptor' : k === 1 ? '1 file descriptor' : `${k} file descriptors`);
    return `${name}: carries ${what(msg.fds.length)}, expected ${what(wantFds)}`;
  }
  return null;
}

export const needsReply = (msg: Message): boolean => (msg.flags & FLAG_NEED_REPLY) !== 0;
