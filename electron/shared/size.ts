// Sizes as people type them ("10G", "512MiB", "1.5T", "4096") and as Spindle prints them.
// K/M/G/T are 1024-based, as in qemu-img; "MB"-style units are refused as ambiguous.
import { SpindleError } from './errors.js';

const UNITS: Record<string, number> = { '': 0, b: 0, k: 1, kib: 1, m: 2, mib: 2, g: 3, gib: 3, t: 4, tib: 4, p: 5, pib: 5 };
const PRINT_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Bytes from "10G", "10 GiB", "1.5t", "4096", "4096B". Throws INVALID_ARGUMENT with a sentence. */
export function parseSize(text: string): number {
  const input = String(text).trim();
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(input);
  if (!m) {
    throw new SpindleError(
      'INVALID_ARGUMENT',
      `'${text}' is not a size: write a number with an optional unit, like 10G, 512M, 20GiB or 4096.`,
    );
  }
  const [, num, rawUnit] = m;
  const unit = rawUnit!.toLowerCase();
  if (!(unit in UNITS)) {
    const hint = /^[kmgtp]b$/.test(unit)
      ? ` '${rawUnit}' is ambiguous (1000 or 1024?): use ${rawUnit![0]!.toUpperCase()} or ${rawUnit![0]!.toUpperCase()}iB, which mean 1024-based units.`
      : ' Use B, K, M, G, T (or KiB, MiB, GiB, TiB).';
    throw new SpindleError('INVALID_ARGUMENT', `'${text}' has an unknown unit '${rawUnit}'.${hint}`);
  }
  const bytes = Number(num) * 1024 ** UNITS[unit]!;
  if (!Number.isInteger(bytes)) {
    throw new SpindleError('INVALID_ARGUMENT', `'${text}' is not a whole number of bytes.`);
  }
  if (bytes <= 0) throw new SpindleError('INVALID_ARGUMENT', `'${text}' is zero: a size must be positive.`);
  if (!Number.isSafeInteger(bytes)) throw new SpindleError('INVALID_ARGUMENT', `'${text}' is too large.`);
  return bytes;
}

/** "10 GiB", "1.5 MiB", "512 B": 1024-based, at most one decimal, trailing ".0" dropped. */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return `${bytes} B`;
  let i = 0;
  let v = bytes;
  while (v >= 1024 && i < PRINT_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  const shown = i === 0 ? String(v) : (Math.round(v * 10) / 10).toFixed(1).replace(/\.0$/, '');
  return `${shown} ${PRINT_UNITS[i]}`;
}
