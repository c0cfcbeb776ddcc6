// The driver (guest) side of a split virtqueue laid out in a piece of memory we own: adds
// descriptor chains, publishes them on the avail ring and collects used entries. Used by the
// unit tests (hand-built rings) and by `spindle loadgen`, which plays a guest to any
// vhost-user-blk backend. Ordering mirrors the device side (see split-virtqueue.ts): the avail
// idx and used_event are the synchronisation points and go through Atomics.
import {
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_USED_F_NO_NOTIFY,
  vringNeedEvent,
} from '../dataplane/virtio/split-virtqueue.js';

export interface DriverBuffer {
  addr: number;
  len: number;
  /** Device-writable. */
  write: boolean;
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

export class DriverRing {
  readonly size: number;
  readonly eventIdx: boolean;
  /** Guest addresses of the ring parts, to hand to the device. */
  readonly descAddr: number;
  readonly availAddr: number;
  readonly usedAddr: number;

  private readonly memGuestAddr: number;
  private readonly view: DataView;
  private readonly desc: DataView;
  private readonly avail16: Uint16Array;
  private readonly used16: Uint16Array;
  private readonly used32: Uint32Array;
  private readonly nextShadow: Uint16Array;
  private readonly chainLen: Uint16Array;
  private freeHead = 0;
  private freeCount: number;
  private availIdx = 0;
  private availPublished = 0;
  private lastUsed = 0;

  /** Bytes a ring of `size` entries occupies (descriptor table, avail and used rings). */
  static bytesNeeded(size: number): number {
    return align(16 * size + 6 + 2 * size, 4) + 6 + 8 * size;
  }

  /**
   * @param memory the memory holding the ring (and, for indirect chains, their tables); may sit
   *   at an offset inside its ArrayBuffer
   * @param memGuestAddr guest address of memory[0]
   * @param ringGuestAddr where to lay the ring out (16-byte aligned, inside memory)
   */
  constructor(memory: Uint8Array, memGuestAddr: number, ringGuestAddr: number, size: number, opts: { eventIdx: boolean }) {
    if (size < 1 || size > 32768 || (size & (size - 1)) !== 0) throw new RangeError(`ring size ${size} is not a power of two up to 32768`);
    const base = ringGuestAddr - memGuestAddr;
    if (base < 0 || base % 16 !== 0 || base + DriverRing.bytesNeeded(size) > memory.byteLength || memory.byteOffset % 4 !== 0) {
      throw new RangeError(`a ring of ${size} entries does not fit at 0x${ringGuestAddr.toString(16)}`);
    }
    this.size = size;
    this.eventIdx = opts.eventIdx;
    this.memGuestAddr = memGuestAddr;
    this.descAddr = ringGuestAddr;
    this.availAddr = ringGuestAddr + 16 * size;
    this.usedAddr = ringGuestAddr + align(16 * size + 6 + 2 * size, 4);
    const { buffer, byteOffset: at } = memory;
    this.view = new DataView(buffer, at, memory.byteLength);
    this.desc = new DataView(buffer, at + base, 16 * size);
    this.avail16 = new Uint16Array(buffer, at + this.availAddr - memGuestAddr, 3 + size);
    this.used16 = new Uint16Array(buffer, at + this.usedAddr - memGuestAddr, 3 + 4 * size);
    this.used32 = new Uint32Array(buffer, at + this.usedAddr - memGuestAddr, 1 + 2 * size);
    memory.fill(0, base, base + DriverRing.bytesNeeded(size));
    this.nextShadow = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.nextShadow[i] = i + 1;
    this.chainLen = new Uint16Array(size);
    this.freeCount = size;
  }

  get freeDescriptors(): number {
    return this.freeCount;
  }

  /** Requests interrupts only from the device's used idx reaching the one we last collected (EVENT_IDX),
   *  or suppresses them entirely (flag form). */
  setInterrupts(enabled: boolean): void {
    if (this.eventIdx) Atomics.store(this.avail16, 2 + this.size, enabled ? this.lastUsed : (this.lastUsed - 1) & 0xffff);
    else Atomics.store(this.avail16, 0, enabled ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT);
  }

  /** Writes descriptor i as is: for tests that build malformed rings. */
  writeDesc(i: number, addr: number, len: number, flags: number, next: number): void {
    const o = 16 * i;
    this.desc.setBigUint64(o, BigInt(addr), true);
    this.desc.setUint32(o + 8, len, true);
    this.desc.setUint16(o + 12, flags, true);
    this.desc.setUint16(o + 14, next, true);
  }

  /** Puts any head index on the avail ring (not yet published): for tests. */
  pushAvailRaw(head: number): void {
    this.avail16[2 + (this.availIdx & (this.size - 1))] = head;
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }

  /** Sets the avail idx the device will see to any value: for tests. */
  setAvailIdxRaw(idx: number): void {
    this.availIdx = idx & 0xffff;
    Atomics.store(this.avail16, 1, this.availIdx);
  }

  private takeDesc(): number {
    const d = this.freeHead;
    this.freeHead = this.nextShadow[d];
    this.freeCount--;
    return d;
  }

  /** Adds a chain of direct descriptors. Returns its head, or -1 when the ring has too few free descriptors. */
  addChain(bufs: readonly DriverBuffer[]): number {
    const n = bufs.length;
    if (n === 0 || n > this.freeCount) return -1;
    const head = this.freeHead;
    for (let k = 0; k < n; k++) {
      const cur = this.takeDesc();
      const b = bufs[k];
      const more = k + 1 < n;
      this.writeDesc(cur, b.addr, b.len, (b.write ? VIRTQ_DESC_F_WRITE : 0) | (more ? VIRTQ_DESC_F_NEXT : 0), more ? this.freeHead : 0);
    }
    this.chainLen[head] = n;
    this.pushAvailRaw(head);
    return head;
  }

  /** Adds a header / data / status chain without allocating (the loadgen hot path). dataLen 0 omits the data descriptor. */
  addRequest(hdrAddr: number, dataAddr: number, dataLen: number, dataWritable: boolean, statusAddr: number): number {
    const n = dataLen > 0 ? 3 : 2;
    if (n > this.freeCount) return -1;
    const head = this.takeDesc();
    let cur = head;
    this.writeDescFast(cur, hdrAddr, 16, VIRTQ_DESC_F_NEXT, this.freeHead);
    if (dataLen > 0) {
      cur = this.takeDesc();
      this.writeDescFast(cur, dataAddr, dataLen, VIRTQ_DESC_F_NEXT | (dataWritable ? VIRTQ_DESC_F_WRITE : 0), this.freeHead);
    }
    cur = this.takeDesc();
    this.writeDescFast(cur, statusAddr, 1, VIRTQ_DESC_F_WRITE, 0);
    this.chainLen[head] = n;
    this.pushAvailRaw(head);
    return head;
  }

  private writeDescFast(i: number, addr: number, len: number, flags: number, next: number): void {
    const o = 16 * i;
    this.desc.setUint32(o, addr % 0x1_0000_0000, true);
    this.desc.setUint32(o + 4, Math.floor(addr / 0x1_0000_0000), true);
    this.desc.setUint32(o + 8, len, true);
    this.desc.setUint16(o + 12, flags, true);
    this.desc.setUint16(o + 14, next, true);
  }

  /** Adds a chain through one indirect descriptor whose table is written at tableAddr (16 * bufs.length bytes). */
  addIndirect(tableAddr: number, bufs: readonly DriverBuffer[]): number {
    if (this.freeCount < 1 || bufs.length === 0) return -1;
    const t = tableAddr - this.memGuestAddr;
    bufs.forEach((b, k) => {
      const o = t + 16 * k;
      const more = k + 1 < bufs.length;
      this.view.setBigUint64(o, BigInt(b.addr), true);
      this.view.setUint32(o + 8, b.len, true);
      this.view.setUint16(o + 12, (b.write ? VIRTQ_DESC_F_WRITE : 0) | (more ? VIRTQ_DESC_F_NEXT : 0), true);
      this.view.setUint16(o + 14, more ? k + 1 : 0, true);
    });
    const head = this.takeDesc();
    this.writeDesc(head, tableAddr, 16 * bufs.length, VIRTQ_DESC_F_INDIRECT, 0);
    this.chainLen[head] = 1;
    this.pushAvailRaw(head);
    return head;
  }

  /** Makes the chains added since the last call visible to the device. Returns whether the
   *  device asked to be kicked for them. */
  publish(): boolean {
    const newIdx = this.availIdx;
    const old = this.availPublished;
    if (newIdx === old) return false;
    Atomics.store(this.avail16, 1, newIdx);
    this.availPublished = newIdx;
    return this.eventIdx
      ? vringNeedEvent(Atomics.load(this.used16, 2 + 4 * this.size), newIdx, old)
      : (Atomics.load(this.used16, 0) & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }

  /** Collects used entries, frees their descriptors and calls onUsed(head, len) for each. Returns
   *  how many. Throws if the device returns a head that is not in flight (a device bug).
   *  With EVENT_IDX it then asks for an interrupt at the next used entry, and re-checks used idx
   *  after that store: an entry published in between would otherwise raise no interrupt. */
  collect(onUsed: (head: number, len: number) => void): number {
    let n = 0;
    for (;;) {
      const idx = Atomics.load(this.used16, 1);
      while (this.lastUsed !== idx) {
        const k = 1 + 2 * (this.lastUsed & (this.size - 1));
        const head = this.used32[k];
        const len = this.used32[k + 1];
        if (head >= this.size || this.chainLen[head] === 0) {
          throw new Error(`the device returned descriptor ${head}, which is not in flight`);
        }
        this.freeChain(head);
        this.lastUsed = (this.lastUsed + 1) & 0xffff;
        n++;
        onUsed(head, len);
      }
      if (!this.eventIdx) return n;
      Atomics.store(this.avail16, 2 + this.size, this.lastUsed);
      if (Atomics.load(this.used16, 1) === this.lastUsed) return n;
    }
  }

  // A chain's descriptors were taken in free-list order, so nextShadow still links them.
  private freeChain(head: number): void {
    const n = this.chainLen[head];
    this.chainLen[head] = 0;
    let last = head;
    for (let k = 1; k < n; k++) last = this.nextShadow[last];
    this.nextShadow[last] = this.freeHead;
    this.freeHead = head;
    this.freeCount += n;
  }

  /** Used idx the device has published (for tests). */
  usedIdx(): number {
    return Atomics.load(this.used16, 1);
  }

  /** The device's avail_event (for tests). */
  availEvent(): number {
    return Atomics.load(this.used16, 2 + 4 * this.size);
  }

  /** Used element at position i of the used ring (for tests). */
  usedElem(i: number): { id: number; len: number } {
    const k = 1 + 2 * (i & (this.size - 1));
    return { id: this.used32[k], len: this.used32[k + 1] };
  }

  /** A byte of memory at a guest address (for tests). */
  byteAt(addr: number): number {
    return this.view.getUint8(addr - this.memGuestAddr);
  }
}
