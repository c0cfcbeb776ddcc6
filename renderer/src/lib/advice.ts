// The advisor's word on one disk, from a FileAdvice: one verdict (a badge and one sentence why),
// the probe's result as its own badge, and the facts behind both for the "Why" disclosure. The
// verdict folds every finding into one answer, so the page never says "not safe" and "safe" at once.
import type { FileAdvice } from '../../../electron/shared/api.js';
import { bytes } from './format.js';

export interface Verdict {
  badge: string;
  tone: 'ok' | 'warn' | 'err' | '';
  /** One sentence. */
  why: string;
}

const fsOf = (a: FileAdvice) => a.fsType ?? 'this filesystem';
const measured = (a: FileAdvice) => (a.probe?.measured ? a.probe : null);

export function verdict(a: FileAdvice): Verdict {
  const useNote = a.notes.find((n) => /backs|mounted|holds|swap|held by|in use/i.test(n));
  if (a.inUse)
    return {
      badge: 'in use by the host',
      tone: 'err',
      why: useNote ?? 'The host itself uses this, so a guest writing to it would change what the host sees.',
    };
  if (a.kind === 'block') {
    return {
      badge: 'host device',
      tone: 'ok',
      why: 'A host device has no holes to fill, so native AIO with cache none is the fastest safe choice, and the default.',
    };
  }
  const fs = fsOf(a);
  const probe = measured(a);
  if (!a.directIo) {
    return {
      badge: 'page cache only',
      tone: 'warn',
      why: `${fs} does not support direct I/O here, so only threads with the host page cache work for this file.`,
    };
  }
  if (a.format === 'qcow2') {
    return {
      badge: 'qcow2: grows as written',
      tone: 'warn',
      why: `A qcow2 file grows as the guest writes new clusters, and native AIO can stall on that allocation: keep threads unless the image was created fully preallocated.`,
    };
  }
  if (a.sparse) {
    const way = probe?.nowait
      ? 'keep threads, Preallocate it, or use native with nowait, which the probe found sends those writes to the thread pool instead'
      : 'keep threads, or Preallocate it before choosing native';
    return {
      badge: 'sparse: native may stall',
      tone: 'warn',
      why: `The file has holes that ${fs} fills as the guest writes, and native AIO can stall while it does: ${way}.`,
    };
  }
  const base = `Fully allocated on ${fs} with direct I/O, so native AIO with cache none will not stall on allocation`;
  if (!probe) return { badge: 'safe for native', tone: 'ok', why: `${base}.` };
  return probe.nowait
    ? { badge: 'safe for native', tone: 'ok', why: `${base}, and the probe found nowait works here too.` }
    : { badge: 'safe for native', tone: 'ok', why: `${base}; the probe found nowait bounces on ${fs}, so leave nowait off.` };
}

/** The kept probe's result as a badge, or null when the file was never probed. */
export function probeBadge(a: FileAdvice): { text: string; tone: 'ok' | 'warn' | ''; title: string } | null {
  const p = a.probe;
  if (!p) return null;
  const when = p.at ? ` (${new Date(p.at).toLocaleDateString(undefined, { day: 'numeric', month: 'short' })})` : '';
  if (!p.measured) return { text: 'probe: not possible here', tone: '', title: p.summary };
  return p.nowait
    ? { text: `probe: nowait works${when}`, tone: 'ok', title: p.summary }
    : { text: `probe: nowait bounces${when}`, tone: 'warn', title: p.summary };
}

/** Verdict-like notes the badge and its sentence already say (or that name a CLI flag). */
const SAID = /^(Image file:|Host block device:|Safe for native|Not safe for native|nowait not measured)/;

/** The facts behind the verdict, for the "Why" disclosure: sizes, filesystem, probe numbers, and the advisor's other notes. */
export function facts(a: FileAdvice): string[] {
  const out: string[] = [];
  if (a.kind === 'file') {
    const alloc = a.sparse
      ? `${bytes(a.allocatedBytes ?? null)} of ${bytes(a.sizeBytes)} allocated${a.holeCount ? ` (${a.holeCount} hole${a.holeCount === 1 ? '' : 's'}, ${bytes(a.holeBytes ?? null)})` : ''}`
      : `${bytes(a.sizeBytes)}, fully allocated`;
    out.push(`Size: ${alloc}.`);
    out.push(
      `Filesystem: ${fsOf(a)}; direct I/O (O_DIRECT): ${a.directIo ? 'works' : 'not supported'}${a.logicalBlockSize ? `; logical block size ${a.logicalBlockSize} bytes` : ''}.`,
    );
  } else {
    out.push(`Size: ${bytes(a.sizeBytes)}${a.logicalBlockSize ? `; logical block size ${a.logicalBlockSize} bytes` : ''}.`);
  }
  const p = a.probe;
  if (p) {
    // The probe's facts, not its summary: the verdict above already weighs them against the file's holes.
    const when = p.at ? `Probed ${new Date(p.at).toLocaleString()}` : 'Probed';
    out.push(
      p.measured
        ? `${when}: RWF_NOWAIT ${p.nowait ? 'qualifies' : 'does not qualify'} on ${fsOf(a)} (with nowait, a request that would block goes to the thread pool instead).`
        : `${when}: ${p.summary}`,
    );
  }
  for (const n of a.notes) if (!SAID.test(n) && n !== p?.summary && !out.includes(n)) out.push(n);
  return out;
}
