// The disk presets in words a user knows: each names a cache/aio/nowait combination
// and says in one sentence what it does to speed, host memory and what a host crash would lose.
// The kernel terms stay behind "Details".
import { CACHE_SEMANTICS, defaultModes, type AioMode, type CacheMode, type DiskKind } from './diskRules.js';
import type { NowaitMode } from '../../../electron/shared/modes.js';

export type PresetId = 'safe' | 'fastest' | 'disposable';
export interface Modes {
  aio: AioMode;
  cache: CacheMode;
  nowait: NowaitMode;
}

/** What the aio comparison found fastest on this disk. */
export interface Measured {
  modes: Modes;
  /** "io_uring + none" */
  label: string;
  /** When it was measured (ISO date). */
  at: string;
  /** The numbers that decided it, e.g. "write 64k 812 MB/s, read 64k 930 MB/s". */
  evidence: string;
}

export interface Preset {
  id: PresetId;
  title: string;
  /** One sentence: speed, host memory, host crash. */
  sentence: string;
  /** Null when it cannot be chosen (not measured yet). */
  modes: Modes | null;
}

/** What cache mode does to host memory, in words. */
export function memoryWords(cache: CacheMode): string {
  return CACHE_SEMANTICS[cache].direct
    ? 'uses no host memory for its data'
    : 'uses host memory as a cache (given back when the host needs it)';
}

/** What a host crash or power loss would lose under this cache mode, in words. */
export function crashWords(cache: CacheMode): string {
  const c = CACHE_SEMANTICS[cache];
  if (c.flush === 'nothing') return 'a host crash or power loss can lose everything written recently, even what the guest saved';
  if (c.dsync) return 'a host crash loses nothing the guest was told is written';
  return 'a host crash loses only writes the guest had not yet flushed';
}

export const DISPOSABLE: Modes = { aio: 'threads', cache: 'unsafe', nowait: 'auto' };

export function safeModes(kind: DiskKind): Modes {
  return { ...defaultModes(kind), nowait: 'auto' };
}

export function presets(kind: DiskKind, measured: Measured | null): Preset[] {
  const safe = safeModes(kind);
  const date = measured ? new Date(measured.at).toLocaleDateString(undefined, { day: 'numeric', month: 'short', year: 'numeric' }) : '';
  return [
    {
      id: 'safe',
      title: 'Safe default',
      sentence: `${kind === 'block' ? 'Fast for a host device' : 'Good speed for most guests'}; ${memoryWords(safe.cache)}; ${crashWords(safe.cache)}.`,
      modes: safe,
    },
    {
      id: 'fastest',
      title: 'Fastest on this disk (measured)',
      sentence: measured
        ? `${measured.label} was fastest when you measured this disk on ${date} (${measured.evidence}); it ${memoryWords(measured.modes.cache)}; ${crashWords(measured.modes.cache)}.`
        : 'Not measured yet: run Compare aio modes on this disk (its VM stopped) and this picks the mode that was fastest there.',
      modes: measured?.modes ?? null,
    },
    {
      id: 'disposable',
      title: 'Disposable (unsafe)',
      sentence: `Fastest writes, as the guest’s flushes are ignored; ${memoryWords(DISPOSABLE.cache).replace(/ \(.*\)$/, '')}; ${crashWords(DISPOSABLE.cache)}: only for data you can throw away.`,
      modes: DISPOSABLE,
    },
  ];
}

/** nowait as it takes effect: only native uses it, and host devices run 'auto' as 'off'. */
function effectiveNowait(kind: DiskKind, m: Modes): string {
  if (m.aio !== 'native') return '-';
  return kind === 'block' && m.nowait === 'auto' ? 'off' : m.nowait;
}

export function sameModes(kind: DiskKind, a: Modes, b: Modes): boolean {
  return a.aio === b.aio && a.cache === b.cache && effectiveNowait(kind, a) === effectiveNowait(kind, b);
}

/** The preset these modes are, or null for a custom combination. The measured one wins a tie with the safe default. */
export function matchPreset(kind: DiskKind, modes: Modes, list: Preset[]): PresetId | null {
  const hit = (id: PresetId) => {
    const p = list.find((x) => x.id === id);
    return p?.modes && sameModes(kind, p.modes, modes) ? id : null;
  };
  return hit('fastest') ?? hit('safe') ?? hit('disposable');
}
