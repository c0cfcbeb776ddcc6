// What the disk settings offer, and why: every rule comes from electron/shared/modes.ts so the
// UI and the backend refuse the same combinations with the same sentence.
import {
  AIO_MODES,
  CACHE_MODES,
  CACHE_SEMANTICS,
  defaultModes,
  modeConflict,
  type AioMode,
  type CacheMode,
} from '../../../electron/shared/modes.js';

export type DiskKind = 'file' | 'block';

export interface ModeOption<T extends string> {
  value: T;
  label: string;
  disabled: boolean;
  /** Why it cannot be chosen now, a sentence; shown inline. */
  reason: string | null;
  isDefault: boolean;
}

/** The words that mark the default for this kind of disk. */
export function defaultNote(kind: DiskKind): string {
  return kind === 'block' ? 'recommended for host devices' : 'default for image files';
}

const AIO_LABEL: Record<AioMode, string> = { threads: 'threads', native: 'native (Linux AIO)', io_uring: 'io_uring' };

export function aioOptions(kind: DiskKind, cache: CacheMode): ModeOption<AioMode>[] {
  const def = defaultModes(kind);
  return AIO_MODES.map((aio) => {
    const reason = modeConflict(aio, cache);
    const isDefault = aio === def.aio;
    return {
      value: aio,
      label: AIO_LABEL[aio] + (isDefault ? ` — ${defaultNote(kind)}` : ''),
      disabled: reason !== null,
      reason,
      isDefault,
    };
  });
}

export function cacheOptions(kind: DiskKind, aio: AioMode): ModeOption<CacheMode>[] {
  const def = defaultModes(kind);
  return CACHE_MODES.map((cache) => {
    const reason = modeConflict(aio, cache);
    const isDefault = cache === def.cache;
    return { value: cache, label: cache + (isDefault ? ` — ${defaultNote(kind)}` : ''), disabled: reason !== null, reason, isDefault };
  });
}

export const cacheSummary = (cache: CacheMode) => CACHE_SEMANTICS[cache].summary;

/** The data-loss warning for cache 'unsafe', or null. */
export function dataLossWarning(cache: CacheMode): string | null {
  return CACHE_SEMANTICS[cache].flush === 'nothing'
    ? "Cache 'unsafe' ignores the guest's flushes: if the host crashes or loses power, data the guest believes is saved can be lost. Use it only for disposable disks."
    : null;
}

/** Why nowait cannot be set now, or null. */
export function nowaitReason(aio: AioMode): string | null {
  return aio === 'native' ? null : 'RWF_NOWAIT applies to native Linux AIO only.';
}

export function isDefaultCombo(kind: DiskKind, aio: AioMode, cache: CacheMode): boolean {
  const d = defaultModes(kind);
  return d.aio === aio && d.cache === cache;
}

/** What each aio mode does, in one sentence (the Aio control's description). */
export function aioSummary(aio: AioMode): string {
  switch (aio) {
    case 'threads':
      return 'threads: a pool of host threads carries out each request; works on every file and device, with or without the host page cache.';
    case 'native':
      return 'native: Linux AIO submits requests to the kernel without extra threads; it needs cache none or directsync.';
    case 'io_uring':
      return "io_uring: the kernel's newest asynchronous interface, with the least CPU per request; works with every cache mode.";
  }
}

/** A disk's modes in a few words ("native+nowait + none"); nowait only where it takes effect (native on a file). */
export function modeWords(kind: DiskKind, m: { aio: AioMode; cache: CacheMode; nowait: 'on' | 'off' | 'auto' }): string {
  const nowait = m.aio === 'native' && kind === 'file' && m.nowait !== 'off' ? `+nowait${m.nowait === 'auto' ? '(auto)' : ''}` : '';
  return `${m.aio}${nowait} + ${m.cache}`;
}

export { modeConflict, defaultModes, CACHE_SEMANTICS };
export type { AioMode, CacheMode };
