// Guest-like profiles for the aio comparison, beside the 2009 native-AIO post's sequential,
// single-request columns: what a guest's filesystem and database do (4k random with 32 requests
// in flight, as fio's usual test, and a 70/30 read/write mix). Pure: the renderer sends them.

export interface BenchProfile {
  op: 'read' | 'write' | 'mixed';
  recordBytes: number;
  /** Random offsets; 'mixed' is always random. */
  random?: boolean;
  /** Requests in flight for this workload (default: the run's). */
  iodepth?: number;
  /** For 'mixed': percent of reads (default 70). */
  readPercent?: number;
}

export const GUEST_PROFILES: readonly BenchProfile[] = [
  { op: 'read', recordBytes: 4096, random: true, iodepth: 32 },
  { op: 'write', recordBytes: 4096, random: true, iodepth: 32 },
  { op: 'mixed', recordBytes: 4096, random: true, iodepth: 32, readPercent: 70 },
];

const size = (bytes: number): string =>
  bytes % (1 << 20) === 0 ? `${bytes >> 20}M` : bytes % 1024 === 0 ? `${bytes >> 10}k` : String(bytes);

/** "write 64k", "random read 4k ×32", "mixed 70/30 4k ×32". */
export function profileLabel(w: BenchProfile): string {
  const depth = w.iodepth ? ` ×${w.iodepth}` : '';
  const reads = w.readPercent ?? 70;
  if (w.op === 'mixed') return `mixed ${reads}/${100 - reads} ${size(w.recordBytes)}${depth}`;
  return `${w.random ? 'random ' : ''}${w.op} ${size(w.recordBytes)}${depth}`;
}
