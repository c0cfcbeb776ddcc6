// The inflight I/O area (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD, split rings): shared memory the
// backend records in-flight descriptors in, which the frontend keeps across backend restarts and
// hands back with SET_INFLIGHT_FD. Layout per queue (vhost-user.rst "Inflight I/O tracking"):
//   u64 features, u16 version, u16 desc_num, u16 last_batch_head, u16 used_idx,
//   then desc_num x { u8 inflight, u8 pad[5], u16 next, u64 counter }
// The device resubmits from it after a restart (virtio/inflight-log.ts); here it is allocated, kept and handed back.
// Both directions are shared memory the frontend holds an fd of: only a memfd sealed against
// shrinking is mapped (see sharedMemoryProblem), and the one allocated here is sealed to its size.
import { posix, closeQuietly, SEALS_FIXED_SIZE } from '../native/posix.js';
import { sharedMemoryProblem } from './memory-table.js';
import { MAX_RING_SIZE, type InflightDesc } from './protocol.js';

export const INFLIGHT_VERSION = 1;
const QUEUE_HEADER = 16;
const DESC_STATE = 16;
const ALIGN = 64;

/** Bytes of one queue's region, rounded up to a cache line like libvhost-user does. */
export const inflightQueueRegionSize = (queueSize: number): number => Math.ceil((QUEUE_HEADER + DESC_STATE * queueSize) / ALIGN) * ALIGN;

/** Why numQueues/queueSize cannot describe an inflight area for this device, or null. */
export function inflightShapeProblem(numQueues: number, queueSize: number, deviceQueues: number): string | null {
  if (numQueues < 1 || numQueues > deviceQueues) return `${numQueues} queues asked for, the device has ${deviceQueues}`;
  if (queueSize < 1 || queueSize > MAX_RING_SIZE || (queueSize & (queueSize - 1)) !== 0)
    return `queue size ${queueSize} is not a power of two up to ${MAX_RING_SIZE}`;
  return null;
}

export class InflightArea {
  /** The mapped area (a view: it may start at an offset inside its ArrayBuffer). */
  private constructor(
    readonly fd: number,
    readonly memory: Uint8Array,
    readonly desc: InflightDesc,
  ) {}

  /** A fresh, zeroed area with every queue region initialised (version 1, desc_num), in a memfd
   *  sealed to its size before the frontend gets it: it cannot shrink it under this mapping. */
  static allocate(numQueues: number, queueSize: number): InflightArea {
    const regionSize = inflightQueueRegionSize(queueSize);
    const size = regionSize * numQueues;
    const fd = posix.memfdCreate('spindle-inflight', size, SEALS_FIXED_SIZE);
    let memory: Uint8Array;
    try {
      memory = posix.mapShared(fd, 0, size);
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
    const dv = new DataView(memory.buffer, memory.byteOffset, memory.byteLength);
    for (let q = 0; q < numQueues; q++) {
      dv.setUint16(q * regionSize + 8, INFLIGHT_VERSION, true);
      dv.setUint16(q * regionSize + 10, queueSize, true);
    }
    return new InflightArea(fd, memory, { mmapSize: size, mmapOffset: 0, numQueues, queueSize });
  }

  /** The area the frontend hands back (SET_INFLIGHT_FD); takes ownership of fd. */
  static adopt(fd: number, desc: InflightDesc): InflightArea {
    const need = inflightQueueRegionSize(desc.queueSize) * desc.numQueues;
    if (desc.mmapSize < need) {
      closeQuietly(fd);
      throw new Error(`the inflight area is ${desc.mmapSize} bytes, ${desc.numQueues} queues of ${desc.queueSize} need ${need}`);
    }
    let problem: string | null;
    try {
      problem = sharedMemoryProblem(fd);
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
    if (problem) {
      closeQuietly(fd);
      throw new Error(`its file ${problem}`);
    }
    let memory: Uint8Array;
    try {
      memory = posix.mapShared(fd, desc.mmapOffset, desc.mmapSize);
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
    return new InflightArea(fd, memory, desc);
  }

  /** One queue's region (header and descriptor states). */
  queueRegion(index: number): DataView {
    const size = inflightQueueRegionSize(this.desc.queueSize);
    return new DataView(this.memory.buffer, this.memory.byteOffset + index * size, size);
  }

  close(): void {
    posix.unmap(this.memory);
    closeQuietly(this.fd);
  }
}
