import { describe, expect, it } from 'vitest';
import { verdict, probeBadge, facts } from './advice.js';
import type { FileAdvice } from '../../../electron/shared/api.js';

const base: FileAdvice = {
  path: '/i.img',
  kind: 'file',
  sizeBytes: 1 << 30,
  allocatedBytes: 1 << 30,
  sparse: false,
  directIo: true,
  logicalBlockSize: 512,
  fsType: 'ext4',
  safeForNative: true,
  recommended: { aio: 'threads', cache: 'writeback', nowait: 'off' },
  notes: [
    "Image file: aio 'threads' with cache 'writeback' is the default for files.",
    'Safe for native: no holes, O_DIRECT works on ext4, logical block size 512 bytes.',
  ],
};
const probe = {
  measured: true,
  summary: 'ext4: native safe; sparse regions go through the thread pool until written.',
  nowait: true,
  at: '2026-01-02T03:04:05Z',
};
const oneSentence = (s: string) => s.split(/(?<=[.!?])\s+(?=[A-Z])/).length === 1;

describe('the advisor verdict', () => {
  it('a qcow2 file is never badged safe for native, even fully allocated: it grows as the guest writes', () => {
    const v = verdict({ ...base, format: 'qcow2', safeForNative: false });
    expect(v.badge).not.toMatch(/safe/);
    expect(v.tone).toBe('warn');
    expect(v.why).toMatch(/grows/);
  });

  it('one badge and one sentence for every kind of disk', () => {
    const cases: FileAdvice[] = [
      base,
      { ...base, probe },
      { ...base, sparse: true, safeForNative: false, holeBytes: 1 << 29, holeCount: 1 },
      { ...base, sparse: true, safeForNative: false, probe },
      { ...base, directIo: false },
      { ...base, kind: 'block' },
      { ...base, format: 'qcow2', safeForNative: false },
      { ...base, inUse: true, notes: ['/i.img backs /dev/loop3: a guest writing it would change what the host sees through that device.'] },
    ];
    for (const a of cases) {
      const v = verdict(a);
      expect(v.badge.length).toBeGreaterThan(0);
      expect(oneSentence(v.why)).toBe(true);
    }
  });

  it('a probed sparse file never reads "safe" and "may stall" at once, even in the details', () => {
    const a: FileAdvice = {
      ...base,
      sparse: true,
      safeForNative: false,
      probe,
      notes: [...base.notes.slice(0, 1), 'Not safe for native: it is sparse.', probe.summary],
    };
    const text = [verdict(a).badge, verdict(a).why, ...facts(a)].join(' ');
    expect(text).toMatch(/may stall/);
    expect(text).not.toMatch(/native safe|Not safe/);
    expect(probeBadge(a)!.text).toMatch(/^probe: nowait works/);
  });

  it('a fully allocated file is safe for native, and no CLI flag is mentioned', () => {
    const a: FileAdvice = {
      ...base,
      notes: [...base.notes, 'nowait not measured: run with --probe to see whether this filesystem honours RWF_NOWAIT.'],
    };
    expect(verdict(a).badge).toBe('safe for native');
    expect(facts(a).join(' ')).not.toMatch(/--probe/);
    expect(probeBadge(a)).toBeNull();
  });
});
