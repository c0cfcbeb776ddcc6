// Guest memory and a virtio-blk device wired together for unit tests: SharedArrayBuffer regions
// play guest RAM (each region starts at an offset inside its buffer, like guest RAM mapped inside
// a V8 buffer, so every layer is tested honouring byteOffset), DriverRing plays the guest's driver, MemoryBlockDevice (a test double) the disk.
import { DriverRing, type DriverBuffer } from '../../../electron/tools/driver-ring.js';
import { VirtioBlkDevice, type VirtioBlkOptions } from '../../../electron/dataplane/virtio/virtio-blk.js';
import type { GuestMemoryRegion } from '../../../electron/dataplane/virtio/types.js';
import { MemoryBlockDevice, type MemoryBlockOptions } from './memory-block-device.js';

export const GUEST_BASE = 0x10_0000;

/** Where each region's view starts inside its SharedArrayBuffer. */
export const REGION_BYTE_OFFSET = 48;

/** A region view that starts REGION_BYTE_OFFSET bytes into its buffer; the bytes around it are 0xee. */
export function offsetRegionMemory(size: number): Uint8Array {
  const whole = new Uint8Array(new SharedArrayBuffer(size + 2 * REGION_BYTE_OFFSET)).fill(0xee);
  return whole.subarray(REGION_BYTE_OFFSET, REGION_BYTE_OFFSET + size).fill(0);
}

export class TestGuest {
  readonly regions: GuestMemoryRegion[] = [];
  private next: number;

  /** One region of `size` bytes at GUEST_BASE, plus optionally a second one right after it
   *  (adjacent) or after a gap. */
  constructor(size = 1 << 20, second?: { size: number; gap: number }) {
    this.regions.push({ guestAddr: GUEST_BASE, size, frontendAddr: 0x7f00_0000_0000, memory: offsetRegionMemory(size) });
    if (second) {
      this.regions.push({
        guestAddr: GUEST_BASE + size + second.gap,
        size: second.size,
        frontendAddr: 0x7e00_0000_0000,
        memory: offsetRegionMemory(second.size),
      });
    }
    this.next = GUEST_BASE;
  }

  /** Bump allocation in the first region. */
  alloc(len: number, align = 16): number {
    const a = Math.ceil(this.next / align) * align;
    if (a + len > GUEST_BASE + this.regions[0].size) throw new Error('test guest out of memory');
    this.next = a + len;
    return a;
  }

  /** A view of guest bytes [addr, addr+len) inside one region. */
  bytes(addr: number, len: number): Uint8Array {
    for (const r of this.regions) {
      if (addr >= r.guestAddr && addr + len <= r.guestAddr + r.size) return r.memory.subarray(addr - r.guestAddr, addr - r.guestAddr + len);
    }
    throw new RangeError(`test guest: 0x${addr.toString(16)}+${len} is not in one region`);
  }

  view(addr: number, len: number): DataView {
    const b = this.bytes(addr, len);
    return new DataView(b.buffer, b.byteOffset, len);
  }

  ring(size: number, eventIdx: boolean): DriverRing {
    const at = this.alloc(DriverRing.bytesNeeded(size), 4096);
    return new DriverRing(this.regions[0].memory, GUEST_BASE, at, size, { eventIdx });
  }

  /** A 16-byte virtio-blk request header. */
  header(type: number, sector: bigint | number, reserved = 0): number {
    const a = this.alloc(16);
    const v = this.view(a, 16);
    v.setUint32(0, type, true);
    v.setUint32(4, reserved, true);
    v.setBigUint64(8, BigInt(sector), true);
    return a;
  }

  /** A status byte preset to 0xff so tests see that the device wrote it. */
  status(): number {
    const a = this.alloc(1, 1);
    this.bytes(a, 1)[0] = 0xff;
    return a;
  }
}

export interface HarnessOptions {
  queues?: number;
  ringSize?: number;
  /** Per-queue ring sizes (override ringSize). */
  ringSizes?: number[];
  eventIdx?: boolean;
  /** Features the driver acks (default: all offered). */
  features?: bigint;
  blk?: MemoryBlockOptions;
  dev?: VirtioBlkOptions;
  guest?: TestGuest;
}

export interface Harness {
  guest: TestGuest;
  blk: MemoryBlockDevice;
  dev: VirtioBlkDevice;
  rings: DriverRing[];
  notifies: number[];
  broken: { queue: number; reason: string }[];
}

export function harness(opts: HarnessOptions = {}): Harness {
  const guest = opts.guest ?? new TestGuest();
  const blk = new MemoryBlockDevice(opts.blk);
  const queues = opts.queues ?? 2;
  const dev = new VirtioBlkDevice(blk, { numQueues: queues, serial: 'spindle-test', ...opts.dev });
  const eventIdx = opts.eventIdx ?? true;
  let features = opts.features ?? dev.deviceFeatures;
  if (!eventIdx) features &= ~(1n << 29n);
  dev.setFeatures(features);
  dev.setMemory(guest.regions);
  const h: Harness = { guest, blk, dev, rings: [], notifies: [], broken: [] };
  dev.onBroken = (queue, reason) => h.broken.push({ queue, reason });
  for (let q = 0; q < queues; q++) {
    const ring = guest.ring(opts.ringSizes?.[q] ?? opts.ringSize ?? 16, eventIdx);
    h.rings.push(ring);
    h.notifies.push(0);
    dev.startQueue(q, {
      size: ring.size,
      descAddr: ring.descAddr,
      availAddr: ring.availAddr,
      usedAddr: ring.usedAddr,
      lastAvailIdx: 0,
      notify: () => {
        h.notifies[q]++;
      },
    });
  }
  return h;
}

export interface Sent {
  head: number;
  status: number;
  data: number;
}

/** Builds a whole request in guest memory and puts it on queue q's avail ring (not yet published).
 *  data: bytes to write (OUT, DISCARD payload...) or a length of device-writable buffer (IN, GET_ID). */
export function send(
  h: Harness,
  q: number,
  type: number,
  sector: bigint | number,
  data?: Uint8Array | number,
  opts: { indirect?: boolean; pieces?: number } = {},
): Sent {
  const hdr = h.guest.header(type, sector);
  const status = h.guest.status();
  const bufs: DriverBuffer[] = [{ addr: hdr, len: 16, write: false }];
  let dataAddr = 0;
  if (data !== undefined) {
    const len = typeof data === 'number' ? data : data.length;
    dataAddr = h.guest.alloc(len, 512);
    if (typeof data !== 'number') h.guest.bytes(dataAddr, len).set(data);
    const pieces = opts.pieces ?? 1;
    const step = Math.ceil(len / pieces);
    for (let off = 0; off < len; off += step) {
      bufs.push({ addr: dataAddr + off, len: Math.min(step, len - off), write: typeof data === 'number' });
    }
  }
  bufs.push({ addr: status, len: 1, write: true });
  const ring = h.rings[q];
  const head = opts.indirect ? ring.addIndirect(h.guest.alloc(16 * bufs.length), bufs) : ring.addChain(bufs);
  if (head < 0) throw new Error('test ring full');
  return { head, status, data: dataAddr };
}

/** Publishes queue q's new chains and kicks the device (whether or not it asked to be kicked). */
export function kick(h: Harness, q: number): void {
  h.rings[q].publish();
  h.dev.kick(q);
}

export function statusOf(h: Harness, s: Sent): number {
  return h.guest.bytes(s.status, 1)[0];
}

export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
