import { describe, expect, it } from 'vitest';
import { nameTaken } from './names.js';
import type { VmInfo } from '../../../electron/shared/api.js';

const vm = (id: string, name: string) => ({ config: { id, name } }) as unknown as VmInfo;

describe('nameTaken', () => {
  const list = [vm('alpha-box', 'Alpha Box'), vm('beta', 'Beta')];
  it('finds a used name in any letter case and with spaces around it', () => {
    expect(nameTaken('alpha BOX', list)).toMatch(/already used by the VM 'Alpha Box'/);
    expect(nameTaken('  beta ', list)).toMatch(/'Beta'/);
  });
  it('lets a VM keep its own name, and says nothing of free or empty names', () => {
    expect(nameTaken('ALPHA box', list, 'alpha-box')).toBeNull();
    expect(nameTaken('gamma', list)).toBeNull();
    expect(nameTaken('   ', list)).toBeNull();
  });
});
