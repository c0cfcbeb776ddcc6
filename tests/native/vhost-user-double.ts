// A VirtioDevice test double for transport tests. The transport's job is the protocol (memory,
// rings, eventfds); a double that records what it is asked lets tests check exactly that.
// Tests that need real I/O use the virtio branch's VirtioBlkDevice.
import type { GuestMemoryRegion, VirtioDevice, VringSetup } from '../../electron/dataplane/virtio/types.js';

const VERSION_1 = 1n << 32n;
const BLK_F_SEG_MAX = 1n << 2n;
const BLK_F_BLK_SIZE = 1n << 6n;
const BLK_F_FLUSH = 1n << 9n;
const BLK_F_MQ = 1n << 12n;

export class RecordingDevice implements VirtioDevice {
  readonly deviceFeatures: bigint;
  features = 0n;
  memory: GuestMemoryRegion[] = [];
  readonly started = new Map<number, VringSetup>();
  readonly calls: string[] = [];
  kicks: number[] = [];
  resets = 0;
  /** What stopQueue resolves with, per queue (defaults to the setup's lastAvailIdx). */
  nextAvail = new Map<number, number>();
  onKick: ((index: number) => void) | null = null;
  onBroken: ((queue: number, reason: string) => void) | null = null;
  /** virtio_blk_config: capacity at 0, blk_size at 20, writeback at 32, num_queues at 34 (60 bytes). */
  readonly config = new Uint8Array(60);

  constructor(readonly numQueues = 1, capacitySectors = 2048n) {
    this.deviceFeatures = VERSION_1 | BLK_F_SEG_MAX | BLK_F_BLK_SIZE | BLK_F_FLUSH | (numQueues > 1 ? BLK_F_MQ : 0n);
    const dv = new DataView(this.config.buffer);
    dv.setBigUint64(0, capacitySectors, true);
    dv.setUint32(12, 126, true);
    dv.setUint32(20, 512, true);
    dv.setUint16(34, numQueues, true);
  }

  setFeatures(features: bigint): void {
    this.calls.push(`setFeatures(0x${features.toString(16)})`);
    this.features = features;
  }

  readConfig(offset: number, length: number): Uint8Array {
    this.calls.push(`readConfig(${offset},${length})`);
    if (offset + length > this.config.length) throw new RangeError(`config read of ${length} bytes at ${offset} is past the ${this.config.length}-byte config space`);
    return this.config.slice(offset, offset + length);
  }

  writeConfig(offset: number, data: Uint8Array): void {
    if (offset !== 32 || data.length !== 1) throw new RangeError(`only the writeback byte (offset 32) is writable, not ${data.length} bytes at ${offset}`);
    this.config[32] = data[0]!;
  }

  setMemory(regions: GuestMemoryRegion[]): void {
    if (this.started.size) throw new Error('setMemory with queues running');
    this.calls.push(`setMemory(${regions.length})`);
    this.memory = regions;
  }

  startQueue(index: number, setup: VringSetup): void {
    this.calls.push(`startQueue(${index})`);
    this.started.set(index, setup);
  }

  kick(index: number): void {
    this.kicks.push(index);
    this.onKick?.(index);
  }

  async stopQueue(index: number): Promise<number> {
    this.calls.push(`stopQueue(${index})`);
    const setup = this.started.get(index);
    this.started.delete(index);
    return this.nextAvail.get(index) ?? setup?.lastAvailIdx ?? 0;
  }

  async reset(): Promise<void> {
    this.calls.push('reset');
    this.resets++;
    this.started.clear();
    this.memory = [];
    this.features = 0n;
  }
}
