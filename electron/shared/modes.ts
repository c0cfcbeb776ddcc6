// Cache and aio modes with QEMU's meanings (docs/ARCHITECTURE.md, "Cache and aio modes"). Pure: the renderer imports it too.

export const CACHE_MODES = ['writeback', 'none', 'writethrough', 'directsync', 'unsafe'] as const;
export type CacheMode = (typeof CACHE_MODES)[number];

export const AIO_MODES = ['threads', 'native', 'io_uring'] as const;
export type AioMode = (typeof AIO_MODES)[number];

/** What a write meeting a full host filesystem does (QEMU's werror): 'stop' holds it and pauses
 *  the VM until space is freed, 'report' gives the guest an I/O error. */
export const ENOSPC_POLICIES = ['stop', 'report'] as const;
export type EnospcPolicy = (typeof ENOSPC_POLICIES)[number];

export const NOWAIT_MODES = ['on', 'off', 'auto'] as const;
export type NowaitMode = (typeof NOWAIT_MODES)[number];

export interface CacheSemantics {
  /** Opened with O_DIRECT: bypasses the host page cache. */
  direct: boolean;
  /** Opened with O_DSYNC: every write is durable when it completes. */
  dsync: boolean;
  /** The guest sees a volatile write cache (virtio-blk WCE) and must flush. */
  writeCache: boolean;
  /** What a guest FLUSH does. */
  flush: 'fdatasync' | 'nothing';
  /** One line for the UI and the CLI. */
  summary: string;
}

export const CACHE_SEMANTICS: Record<CacheMode, CacheSemantics> = {
  writeback: {
    direct: false,
    dsync: false,
    writeCache: true,
    flush: 'fdatasync',
    summary: 'host page cache, guest flushes reach the disk',
  },
  none: {
    direct: true,
    dsync: false,
    writeCache: true,
    flush: 'fdatasync',
    summary: 'bypasses the host page cache (O_DIRECT), guest flushes reach the disk',
  },
  writethrough: {
    direct: false,
    dsync: true,
    writeCache: false,
    flush: 'fdatasync',
    summary: 'every write is durable before it completes (O_DSYNC)',
  },
  directsync: {
    direct: true,
    dsync: true,
    writeCache: false,
    flush: 'fdatasync',
    summary: 'O_DIRECT and O_DSYNC: every write durable, no host caching',
  },
  unsafe: {
    direct: false,
    dsync: false,
    writeCache: true,
    flush: 'nothing',
    summary: 'flushes are ignored: data can be lost if the host crashes',
  },
};

/** The engine variants a comparison measures, in this order: each aio mode, and native once more
 *  with RWF_NOWAIT. The app's comparison, `spindle bench-engines` and the benchmarks all use it. */
export const ENGINE_VARIANTS: readonly { readonly aio: AioMode; readonly nowait: boolean }[] = [
  { aio: 'threads', nowait: false },
  { aio: 'native', nowait: false },
  { aio: 'native', nowait: true },
  { aio: 'io_uring', nowait: false },
];

/** A variant's name in tables and progress: 'native+nowait' for native with nowait, else the aio mode. */
export const variantName = (v: { aio: string; nowait?: boolean }): string => (v.aio === 'native' && v.nowait ? 'native+nowait' : v.aio);

export const isCacheMode = (v: unknown): v is CacheMode => (CACHE_MODES as readonly unknown[]).includes(v);
export const isAioMode = (v: unknown): v is AioMode => (AIO_MODES as readonly unknown[]).includes(v);

/**
 * Why this aio/cache combination cannot be used, as a sentence for the user, or null when it can.
 * Linux AIO is only asynchronous with O_DIRECT; QEMU refuses the same combination.
 */
export function modeConflict(aio: AioMode, cache: CacheMode): string | null {
  if (aio === 'native' && !CACHE_SEMANTICS[cache].direct) {
    return `aio 'native' needs cache 'none' or 'directsync': Linux AIO is only asynchronous with O_DIRECT, and cache '${cache}' goes through the host page cache.`;
  }
  return null;
}

/** The default for a disk of this kind (docs/ARCHITECTURE.md, "Cache modes and aio modes"); the advisor may refine it for files. */
export function defaultModes(kind: 'file' | 'block'): { aio: AioMode; cache: CacheMode } {
  return kind === 'block' ? { aio: 'native', cache: 'none' } : { aio: 'threads', cache: 'writeback' };
}
