// What a load generator plays, in fio's terms, for both of them: loadgen.ts (a guest over
// vhost-user, through the whole virtio-blk path) and engine-workload.ts (BlockBackend's batch API
// directly, under the virtio layer).

/** fio's --rw: random or sequential, reads, writes, or a random mix. */
export const RW_MODES = ['randread', 'randwrite', 'read', 'write', 'randrw'] as const;
export type RwMode = (typeof RW_MODES)[number];

export interface Workload {
  rw: RwMode;
  /** Bytes per request. */
  bs: number;
  /** Requests kept in flight. */
  iodepth: number;
  /** randrw: the percentage of requests that read (default 50). */
  rwmixread?: number;
}

/** Whether offsets are random (else one pass after another over the region). */
export const isRandom = (rw: RwMode): boolean => rw.startsWith('rand');

/** Whether the workload writes at all. */
export const writes = (rw: RwMode): boolean => rw === 'randwrite' || rw === 'write' || rw === 'randrw';
