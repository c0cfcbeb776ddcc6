// A writer for crash-consistency tests: plays a guest to a vhost-user-blk server (memfd RAM,
// a split ring, kick/call eventfds) and keeps writing 4 KiB blocks, each stamped with its block
// number and a generation, issuing a FLUSH every few completions. It remembers, per block, the
// newest generation it saw complete and the newest one a completed FLUSH covers (a flush makes
// durable what completed before it was submitted). After the server is killed, checkDisk() reads
// the backing file and says whether every block holds a whole generation that is at least what
// the writer may rely on.
import { closeSync, openSync, readSync } from 'node:fs';
import { DriverRing } from '../../electron/tools/driver-ring.js';
import {
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_OUT,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
} from '../../electron/dataplane/virtio/virtio-blk.js';
import { VhostUserFrontend, type SharedGuestMemory, type VringHandle } from '../../electron/tools/vhost-user-frontend.js';
import { F_PROTOCOL_FEATURES } from '../../electron/dataplane/vhost-user/protocol.js';

export const BLOCK = 4096;
const MAGIC = 0x5350_494e; // 'SPIN'
const RING = 64;
const bit = (n: number) => 1n << BigInt(n);

/** The content of `block` at generation `gen` (gen 0 = never written: zeros). */
export function blockContent(block: number, gen: number, out: Uint8Array): void {
  const w = new Uint32Array(out.buffer, out.byteOffset, BLOCK / 4);
  if (gen === 0) {
    w.fill(0);
    return;
  }
  w[0] = MAGIC;
  w[1] = block;
  w[2] = gen;
  let x = (block * 2654435761 + gen * 40503 + 1) >>> 0;
  for (let i = 3; i < w.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    w[i] = x >>> 0;
  }
}

/** The generation a block's bytes hold, or -1 when they are no whole generation (torn or foreign). */
export function generationOf(block: number, bytes: Uint8Array): number {
  const w = new Uint32Array(bytes.buffer, bytes.byteOffset, BLOCK / 4);
  const gen = w[0] === MAGIC && w[1] === block ? w[2]! : w.every((v) => v === 0) ? 0 : -1;
  if (gen <= 0) return gen;
  const expect = new Uint8Array(BLOCK);
  blockContent(block, gen, expect);
  return Buffer.compare(Buffer.from(expect), Buffer.from(bytes.buffer, bytes.byteOffset, BLOCK)) === 0 ? gen : -1;
}

/** What the writer knows, per block, across every server it wrote to. */
export class WriterState {
  /** Newest generation issued (its write may or may not have reached the disk). */
  readonly issued: Uint32Array;
  /** Newest generation whose write completed OK. */
  readonly completed: Uint32Array;
  /** Newest generation a completed FLUSH covers. */
  readonly flushed: Uint32Array;
  writes = 0;
  flushes = 0;
  errors = 0;

  constructor(readonly blocks: number) {
    this.issued = new Uint32Array(blocks);
    this.completed = new Uint32Array(blocks);
    this.flushed = new Uint32Array(blocks);
  }

  /** Problems found in `path` (empty: consistent). `durable` is what must be there. */
  checkDisk(path: string, durable: 'flushed' | 'completed'): string[] {
    const need = durable === 'flushed' ? this.flushed : this.completed;
    const problems: string[] = [];
    const fd = openSync(path, 'r');
    try {
      const buf = new Uint8Array(BLOCK * this.blocks);
      readSync(fd, buf, 0, buf.length, 0);
      for (let b = 0; b < this.blocks; b++) {
        const gen = generationOf(b, buf.subarray(b * BLOCK, (b + 1) * BLOCK));
        if (gen < 0) problems.push(`block ${b} holds no whole generation (torn or foreign data)`);
        else if (gen < need[b]!) problems.push(`block ${b} holds generation ${gen}, but generation ${need[b]} was ${durable}`);
        else if (gen > this.issued[b]!) problems.push(`block ${b} holds generation ${gen}, never written`);
      }
    } finally {
      closeSync(fd);
    }
    return problems;
  }
}

/**
 * Writes to the server at `socket` until stop() (or until the server goes away). Only one write
 * per block is in flight at a time, so "the newest generation" is well defined.
 */
export class CrashWriter {
  private fe: VhostUserFrontend | null = null;
  private mem: SharedGuestMemory | null = null;
  private ring!: DriverRing;
  private handle!: VringHandle;
  private stopped = false;
  private inFlight = 0;
  private readonly slotOfHead = new Int32Array(RING).fill(-1);
  private readonly slotBlock = new Int32Array(RING / 2);
  private readonly slotGen = new Uint32Array(RING / 2);
  /** For a FLUSH slot: the completed generations at the time it was submitted. */
  private readonly flushSnapshot = new Map<number, Uint32Array>();
  private readonly busy: Uint8Array;
  private readonly freeSlots: number[] = [];
  private sinceFlush = 0;
  private x: number;

  constructor(
    private readonly state: WriterState,
    private readonly iodepth = 8,
    private readonly flushEvery = 8,
    seed = 1,
  ) {
    this.busy = new Uint8Array(state.blocks);
    this.x = seed >>> 0 || 1;
  }

  private rand(n: number): number {
    this.x ^= this.x << 13;
    this.x ^= this.x >>> 17;
    this.x ^= this.x << 5;
    return (this.x >>> 0) % n;
  }

  // Guest RAM layout: page 0 unused, ring at 1 page, slot headers+status at +16 KiB, data after.
  private hdr = (s: number) => this.mem!.guestAddr + 16 * 4096 + 32 * s;
  private data = (s: number) => this.mem!.guestAddr + 32 * 4096 + BLOCK * s;

  async start(socket: string): Promise<void> {
    const fe = VhostUserFrontend.connect(socket);
    this.fe = fe;
    const got = await fe.negotiate({
      features: bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_BLK_F_FLUSH),
      protocolFeatures: 0n,
    });
    if (!(got.features & bit(VIRTIO_BLK_F_FLUSH))) throw new Error('the server does not offer FLUSH');
    const slots = RING / 2;
    this.mem = VhostUserFrontend.allocateMemory(32 * 4096 + BLOCK * slots);
    await fe.setMemTable([this.mem]);
    this.ring = new DriverRing(this.mem.memory, this.mem.guestAddr, this.mem.guestAddr + 4096, RING, {
      eventIdx: (got.features & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n,
    });
    this.handle = await fe.setupVring(
      0,
      { size: RING, descAddr: this.ring.descAddr, availAddr: this.ring.availAddr, usedAddr: this.ring.usedAddr },
      () => this.onCall(),
    );
    if (got.features & F_PROTOCOL_FEATURES) await fe.enableVring(0, true);
    for (let s = 0; s < Math.min(this.iodepth, slots); s++) this.freeSlots.push(s);
    this.fill();
  }

  private fill(): void {
    let added = false;
    while (!this.stopped && this.freeSlots.length > 0) {
      const s = this.freeSlots.pop()!;
      const m = this.mem!.memory;
      const view = new DataView(m.buffer, m.byteOffset, m.byteLength);
      const hdrOff = this.hdr(s) - this.mem!.guestAddr;
      let head: number;
      if (this.sinceFlush >= this.flushEvery) {
        this.sinceFlush = 0;
        view.setUint32(hdrOff, VIRTIO_BLK_T_FLUSH, true);
        view.setBigUint64(hdrOff + 8, 0n, true);
        this.flushSnapshot.set(s, this.state.completed.slice());
        this.slotBlock[s] = -1;
        head = this.ring.addChain([
          { addr: this.hdr(s), len: 16, write: false },
          { addr: this.hdr(s) + 16, len: 1, write: true },
        ]);
      } else {
        let b = this.rand(this.state.blocks);
        for (let k = 0; k < this.state.blocks && this.busy[b]; k++) b = (b + 1) % this.state.blocks;
        if (this.busy[b]) {
          this.freeSlots.push(s);
          break;
        }
        this.busy[b] = 1;
        const gen = ++this.state.issued[b]!;
        this.slotBlock[s] = b;
        this.slotGen[s] = gen;
        blockContent(b, gen, m.subarray(this.data(s) - this.mem!.guestAddr, this.data(s) - this.mem!.guestAddr + BLOCK));
        view.setUint32(hdrOff, VIRTIO_BLK_T_OUT, true);
        view.setBigUint64(hdrOff + 8, BigInt((b * BLOCK) / 512), true);
        head = this.ring.addRequest(this.hdr(s), this.data(s), BLOCK, false, this.hdr(s) + 16);
      }
      m[hdrOff + 16] = 0xff;
      if (head < 0) throw new Error('crash writer: ring full');
      this.slotOfHead[head] = s;
      this.inFlight++;
      added = true;
    }
    if (added && this.ring.publish()) this.handle.kick();
  }

  private onCall(): void {
    if (!this.mem) return;
    const status = this.mem.memory;
    this.ring.collect((head) => {
      const s = this.slotOfHead[head]!;
      this.slotOfHead[head] = -1;
      this.inFlight--;
      const ok = status[this.hdr(s) - this.mem!.guestAddr + 16] === 0;
      if (!ok) this.state.errors++;
      const b = this.slotBlock[s]!;
      if (b < 0) {
        const snap = this.flushSnapshot.get(s)!;
        this.flushSnapshot.delete(s);
        if (ok) {
          this.state.flushes++;
          for (let i = 0; i < snap.length; i++) if (snap[i]! > this.state.flushed[i]!) this.state.flushed[i] = snap[i]!;
        }
      } else {
        this.busy[b] = 0;
        if (ok) {
          this.state.writes++;
          this.sinceFlush++;
          if (this.slotGen[s]! > this.state.completed[b]!) this.state.completed[b] = this.slotGen[s]!;
        }
      }
      this.freeSlots.push(s);
    });
    this.fill();
  }

  /** Stops issuing; the server is gone (killed) or about to be: nothing more is learnt from it. */
  stop(): void {
    this.stopped = true;
    this.fe?.close();
    this.fe = null;
    if (this.mem) VhostUserFrontend.freeMemory(this.mem);
    this.mem = null;
  }
}
