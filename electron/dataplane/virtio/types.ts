// The contract between the vhost-user transport and a virtio device (electron/dataplane/virtio/).
// All addresses are numbers: guest physical and frontend addresses stay below 2^53.

/** One region of guest RAM as shared by the frontend (vhost-user SET_MEM_TABLE). */
export interface GuestMemoryRegion {
  /** Guest physical address of the region's first byte. */
  guestAddr: number;
  size: number;
  /** The frontend's (QEMU's) virtual address of the region; vring addresses arrive in this space. */
  frontendAddr: number;
  /**
   * The region mapped into this process: a view whose first `size` bytes are the region (mmap'd
   * guest RAM, or plain memory in tests). It may start at an offset inside its ArrayBuffer (where
   * the runtime refuses external buffers, see posix.mapShared): address it through the view or
   * its buffer + byteOffset, never from the buffer's start.
   */
  memory: Uint8Array;
}

export interface VringSetup {
  size: number;
  /** Guest physical addresses of the three ring parts. */
  descAddr: number;
  availAddr: number;
  usedAddr: number;
  /** Next avail index to process (SET_VRING_BASE). */
  lastAvailIdx: number;
  /** Interrupts the guest (writes the queue's call eventfd). */
  notify: () => void;
}

export interface VirtioDevice {
  /** Device and ring features offered, VERSION_1 included. */
  readonly deviceFeatures: bigint;
  readonly numQueues: number;
  /** Features acked by the driver (SET_FEATURES). */
  setFeatures(features: bigint): void;
  readConfig(offset: number, length: number): Uint8Array;
  writeConfig(offset: number, data: Uint8Array): void;
  /** New guest memory table; the transport stops all queues first, and unmaps the old table only
   *  once this returns (or its promise resolves: I/O still pointing there must finish first). */
  setMemory(regions: GuestMemoryRegion[]): void | Promise<void>;
  startQueue(index: number, setup: VringSetup): void;
  /** The queue's kick eventfd fired: drain the avail ring. */
  kick(index: number): void;
  /** Stops taking requests, drains in-flight ones, resolves with the next avail index (GET_VRING_BASE). */
  stopQueue(index: number): Promise<number>;
  /** Back to the state after construction (frontend disconnected). */
  reset(): Promise<void>;
  /** Set when a malformed chain stops a queue (virtio NEEDS_RESET); the reason is a sentence. */
  onBroken: ((queue: number, reason: string) => void) | null;
}
