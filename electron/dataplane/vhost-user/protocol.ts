// vhost-user wire facts (QEMU docs/interop/vhost-user.rst). Numbers are little-endian, the
// machine's native order on every host Spindle supports.

export const Request = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  /** Hands the backend one end of a socket pair for its own requests (protocol feature BACKEND_REQ). */
  SET_BACKEND_REQ_FD: 21,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
} as const;
export type Request = (typeof Request)[keyof typeof Request];

const requestNames = new Map<number, string>(Object.entries(Request).map(([k, v]) => [v, k]));
/** 'SET_MEM_TABLE', or 'request 99' for codes Spindle does not know. */
export const requestName = (code: number): string => requestNames.get(code) ?? `request ${code}`;

/** Requests the backend sends on the channel SET_BACKEND_REQ_FD gave it ("Back-end message types"). */
export const BackendRequest = {
  /** The device's configuration space changed (a resized disk's capacity); the frontend reads it
   *  again with GET_CONFIG and tells the guest (virtio config-change interrupt). Needs CONFIG. */
  CONFIG_CHANGE_MSG: 2,
} as const;

export const HEADER_SIZE = 12;
export const VERSION = 0x1;
export const VERSION_MASK = 0x3;
export const FLAG_REPLY = 1 << 2;
export const FLAG_NEED_REPLY = 1 << 3;
/** Larger than any message Spindle accepts; a bigger size field means a broken or hostile peer. */
export const MAX_PAYLOAD = 4096;

/** Feature bit 30: the backend speaks GET/SET_PROTOCOL_FEATURES (never passed on to the device). */
export const F_PROTOCOL_FEATURES = 1n << 30n;
/** Feature bit 26: dirty logging for migration; Spindle does not offer it. */
export const F_LOG_ALL = 1n << 26n;

export const ProtocolFeature = {
  MQ: 0,
  LOG_SHMFD: 1,
  REPLY_ACK: 3,
  BACKEND_REQ: 5,
  CONFIG: 9,
  INFLIGHT_SHMFD: 12,
  RESET_DEVICE: 13,
  CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16,
} as const;
export const protocolBit = (bit: number): bigint => 1n << BigInt(bit);

/** What Spindle's backend offers: MQ, REPLY_ACK, BACKEND_REQ, CONFIG, INFLIGHT_SHMFD. */
export const BACKEND_PROTOCOL_FEATURES =
  protocolBit(ProtocolFeature.MQ) |
  protocolBit(ProtocolFeature.REPLY_ACK) |
  protocolBit(ProtocolFeature.BACKEND_REQ) |
  protocolBit(ProtocolFeature.CONFIG) |
  protocolBit(ProtocolFeature.INFLIGHT_SHMFD);

/** At most this many regions in SET_MEM_TABLE (VHOST_MEMORY_BASELINE_NREGIONS). */
export const MAX_MEM_REGIONS = 8;
export const MEM_REGION_SIZE = 32;
/** In SET_VRING_KICK/CALL/ERR: bits 0-7 the ring index, bit 8 "no fd: poll instead". */
export const VRING_INDEX_MASK = 0xff;
export const VRING_NOFD_FLAG = 0x100;
/** GET_CONFIG/SET_CONFIG: offset u32, size u32, flags u32, then the bytes. */
export const CONFIG_HEADER_SIZE = 12;
export const MAX_CONFIG_SIZE = 256;
/** GET/SET_INFLIGHT_FD: mmap_size u64, mmap_offset u64, num_queues u16, queue_size u16 (+ padding). */
export const INFLIGHT_SIZE = 24;
export const INFLIGHT_MIN_SIZE = 20;
/** Split rings are at most 32768 entries (virtio 1.x). */
export const MAX_RING_SIZE = 32768;

export interface Message {
  request: number;
  flags: number;
  payload: Uint8Array;
  /** Received file descriptors; whoever consumes the message owns (and closes) them. */
  fds: number[];
}

export interface MemRegionDesc {
  guestAddr: number;
  size: number;
  frontendAddr: number;
  mmapOffset: number;
}

export interface VringAddrDesc {
  index: number;
  flags: number;
  descAddr: number;
  usedAddr: number;
  availAddr: number;
  logAddr: number;
}

export interface InflightDesc {
  mmapSize: number;
  mmapOffset: number;
  numQueues: number;
  queueSize: number;
}
