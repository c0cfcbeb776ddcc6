// Why virtio-blk stopped a queue (virtio DEVICE_NEEDS_RESET): a malformed ring or chain, a
// malformed request, or a ring the device cannot use. The sentence is made when it is reported.
import { describeBlkRequestError, type BlkRequestError } from './blk-request.js';
import { describeRingError, type RingError } from './ring-error.js';

export type DeviceFault =
  /** The ring's addresses or size cannot be used (RingSetupError's sentence). */
  | { kind: 'ring-setup'; message: string }
  | { kind: 'memory-not-set' }
  /** A parked request's status byte left guest memory (a new memory table) before it completed. */
  | { kind: 'parked-status-lost'; head: number; statusAddr: number }
  /** A bug in Spindle met while reading the ring. */
  | { kind: 'internal'; message: string };

export type QueueFault = RingError | BlkRequestError | DeviceFault;

const REQUEST_KINDS: ReadonlySet<string> = new Set<BlkRequestError['kind']>([
  'header-in-writable',
  'header-too-short',
  'missing-status',
  'read-buffer-readable',
  'write-buffer-writable',
  'too-many-in-flight',
]);

/** The sentence (without its final full stop) saying why the queue stopped. */
export function describeQueueFault(f: QueueFault): string {
  switch (f.kind) {
    case 'ring-setup':
      return f.message;
    case 'memory-not-set':
      return 'the ring was started before the guest memory table was set';
    case 'parked-status-lost':
      return `the status byte of parked request ${f.head} at 0x${f.statusAddr.toString(16)} is no longer in guest memory`;
    case 'internal':
      return `internal error while reading the ring (${f.message})`;
    default:
      return REQUEST_KINDS.has(f.kind) ? describeBlkRequestError(f as BlkRequestError) : describeRingError(f as RingError);
  }
}
