import { describe, expect, it } from 'vitest';
import { presets, matchPreset, type Measured } from './presets.js';

const measured: Measured = {
  modes: { aio: 'io_uring', cache: 'none', nowait: 'off' },
  label: 'io_uring + none',
  at: '2026-01-02T03:04:05Z',
  evidence: 'write 64k 200 MB/s',
};

describe('disk presets', () => {
  it('each says in one sentence what it does to speed, host memory and a host crash', () => {
    for (const kind of ['file', 'block'] as const) {
      for (const p of presets(kind, measured)) {
        expect(p.sentence).toMatch(/memory/);
        expect(p.sentence).toMatch(/crash/);
        expect(p.sentence.split(/(?<=[.!?])\s+(?=[A-Z])/)).toHaveLength(1);
      }
    }
  });

  it('the measured preset is unavailable until measured, and says how to measure', () => {
    const p = presets('file', null).find((x) => x.id === 'fastest')!;
    expect(p.modes).toBeNull();
    expect(p.sentence).toMatch(/Compare aio modes/);
  });

  it('recognises the preset of a disk, nowait only where it takes effect', () => {
    const list = presets('file', measured);
    expect(matchPreset('file', { aio: 'threads', cache: 'writeback', nowait: 'off' }, list)).toBe('safe');
    expect(matchPreset('file', { aio: 'threads', cache: 'unsafe', nowait: 'on' }, list)).toBe('disposable');
    expect(matchPreset('file', { aio: 'io_uring', cache: 'none', nowait: 'auto' }, list)).toBe('fastest');
    expect(matchPreset('file', { aio: 'threads', cache: 'writethrough', nowait: 'off' }, list)).toBeNull();
    const dev = presets('block', null);
    expect(matchPreset('block', { aio: 'native', cache: 'none', nowait: 'off' }, dev)).toBe('safe');
    expect(matchPreset('block', { aio: 'native', cache: 'none', nowait: 'on' }, dev)).toBeNull();
  });
});
