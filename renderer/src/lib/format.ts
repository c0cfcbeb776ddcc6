// Numbers as people read them.
export function bytes(n: number | undefined | null): string {
  if (n === undefined || n === null || !Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export const mbps = (v: number) => `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} MB/s`;
export const iops = (v: number) => (v >= 10000 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(0));
export function latency(us: number): string {
  if (!us) return '—';
  return us >= 1000 ? `${(us / 1000).toFixed(us >= 10000 ? 0 : 1)} ms` : `${us.toFixed(0)} µs`;
}
export const pct = (v: number) => `${v.toFixed(v >= 10 ? 0 : 1)}%`;

/** Record sizes as the 2009 benchmark wrote them: 16k, 64k, 256k, 20M. */
export function recordSize(b: number): string {
  if (b >= 1 << 20 && b % (1 << 20) === 0) return `${b >> 20}M`;
  if (b >= 1024 && b % 1024 === 0) return `${b >> 10}k`;
  return `${b}`;
}

/** A duration in seconds as "12 s ago", "3 min ago", "2 h ago". */
export function ago(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s ago`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
