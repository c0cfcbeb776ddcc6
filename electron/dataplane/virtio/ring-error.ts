// Why a split ring cannot be used as the guest left it: one kind per malformed case (virtio 1.2,
// 2.7). SplitVirtqueue records the fields; the sentence is made only where it is shown.

export type RingError =
  /** The avail index moved by more than the ring holds. */
  | { kind: 'avail-index-jump'; from: number; to: number; size: number }
  /** The avail ring names a head past the ring. */
  | { kind: 'head-out-of-range'; head: number; size: number }
  /** A chain the device holds (parked) has a head past the ring. */
  | { kind: 'held-head-out-of-range'; head: number; size: number }
  | { kind: 'chain-loop'; head: number; limit: number; indirect: boolean }
  | { kind: 'nested-indirect'; head: number }
  | { kind: 'indirect-not-negotiated'; head: number }
  | { kind: 'indirect-not-alone'; head: number }
  | { kind: 'indirect-bad-length'; head: number; len: number }
  | { kind: 'indirect-too-long'; head: number; count: number; limit: number }
  /** `addr` is negative when the guest's address is past 2^53. */
  | { kind: 'indirect-outside-memory'; head: number; addr: number; len: number }
  | { kind: 'readable-after-writable'; head: number }
  | { kind: 'descriptor-outside-memory'; head: number; addr: number; len: number }
  | { kind: 'next-out-of-range'; head: number; next: number; indirect: boolean; size: number };

const hex = (n: number) => `0x${n.toString(16)}`;
const where = (addr: number) => (addr < 0 ? 'an address past 2^53' : hex(addr));

/** The sentence (without its final full stop) saying what is wrong with the ring. */
export function describeRingError(e: RingError): string {
  switch (e.kind) {
    case 'avail-index-jump':
      return `the guest's avail index moved from ${e.from} to ${e.to}, more than the ring size ${e.size}`;
    case 'head-out-of-range':
      return `the avail ring names descriptor ${e.head}, past the ring size ${e.size}`;
    case 'held-head-out-of-range':
      return `chain ${e.head} is past the ring size ${e.size}`;
    case 'chain-loop':
      return e.indirect
        ? `the indirect table of chain ${e.head} loops (more than its ${e.limit} descriptors)`
        : `chain ${e.head} loops (more than the ring's ${e.limit} descriptors)`;
    case 'nested-indirect':
      return `chain ${e.head} has an indirect descriptor inside an indirect table`;
    case 'indirect-not-negotiated':
      return `chain ${e.head} uses an indirect descriptor, but INDIRECT_DESC was not negotiated`;
    case 'indirect-not-alone':
      return `chain ${e.head} has an indirect descriptor that is not alone in its chain`;
    case 'indirect-bad-length':
      return `chain ${e.head} has an indirect table of ${e.len} bytes, not a positive multiple of 16`;
    case 'indirect-too-long':
      return `chain ${e.head} has an indirect table of ${e.count} descriptors, more than the limit ${e.limit}`;
    case 'indirect-outside-memory':
      return `chain ${e.head} has an indirect table at ${where(e.addr)} (${e.len} bytes) outside guest memory`;
    case 'readable-after-writable':
      return `chain ${e.head} has a device-readable descriptor after a device-writable one`;
    case 'descriptor-outside-memory':
      return `chain ${e.head} has a descriptor at ${where(e.addr)} (${e.len} bytes) outside guest memory`;
    case 'next-out-of-range':
      return `chain ${e.head} links to descriptor ${e.next}, past ${e.indirect ? 'its indirect table' : 'the ring'} size ${e.size}`;
  }
}
