import { describe, expect, it } from 'vitest';
import { formatHash, parseHash, type View } from './route.js';

describe('hash routes', () => {
  it.each<View>([
    { page: 'vm', vmId: 'debian-test', tab: 'disks' },
    { page: 'vm', vmId: 'a', tab: 'console' },
    { page: 'compare' },
    { page: 'compare', vmId: 'x', diskId: 'd1' },
    { page: 'scratch' },
    { page: 'welcome' },
  ])('round-trips %j', (v) => {
    expect(parseHash(formatHash(v))).toEqual(v);
  });

  it('reads a VM without a tab as its overview, and anything unknown as the welcome page', () => {
    expect(parseHash('#/vm/abc')).toEqual({ page: 'vm', vmId: 'abc', tab: 'overview' });
    expect(parseHash('#/vm/abc/bogus')).toEqual({ page: 'vm', vmId: 'abc', tab: 'overview' });
    expect(parseHash('')).toEqual({ page: 'welcome' });
    expect(parseHash('#/nonsense')).toEqual({ page: 'welcome' });
  });
});
