// The VM page's overview says why Spindle paused a VM for lack of space and what its disks wait for.
import { describe, expect, it } from 'vitest';
import { render, screen } from '@testing-library/svelte';
import Overview from './Overview.svelte';
import type { VmInfo } from '../../../electron/shared/api.js';

const vm = (extra: Partial<VmInfo>): VmInfo => ({
  config: {
    version: 1,
    id: 'full',
    name: 'full',
    cpus: 1,
    memoryMiB: 256,
    firmware: 'bios',
    boot: { kind: 'disk' },
    disks: [],
    network: { user: false },
    display: 'none',
    createdAt: '2026-01-01T00:00:00.000Z',
  },
  state: 'paused',
  warnings: [],
  disks: [],
  vnc: false,
  ...extra,
});

describe('Overview', () => {
  it('shows the pause reason and, per disk, the writes waiting and the space missing', () => {
    render(Overview, {
      vm: vm({
        pauseReason: 'Spindle paused the VM because the filesystem holding /srv/a.img is full.',
        waitingForSpace: [
          {
            diskId: 'd0',
            path: '/srv/a.img',
            parkedRequests: 3,
            parkedBytes: 3 << 20,
            freeBytes: 512 << 10,
            missingBytes: 2.5 * (1 << 20),
            since: '2026-01-01T10:00:00.000Z',
          },
        ],
      }),
    });
    // What a reader sees: whitespace in the markup collapses to one space.
    const text = screen.getByTestId('space-wait').textContent?.replace(/\s+/g, ' ');
    expect(text).toMatch(/Spindle paused the VM because the filesystem holding \/srv\/a\.img is full\./);
    expect(text).toMatch(/Disk d0 \(\/srv\/a\.img\): 3 writes \(3\.0 MiB\) waiting since/);
    expect(text).toMatch(/needs 2\.5 MiB more free space \(512 KiB free now\)/);
  });

  it('a host device, whose free space cannot be measured, says so', () => {
    render(Overview, {
      vm: vm({
        waitingForSpace: [
          {
            diskId: 'd1',
            path: '/dev/sdz',
            parkedRequests: 1,
            parkedBytes: 4096,
            freeBytes: null,
            missingBytes: null,
            since: '2026-01-01T10:00:00.000Z',
          },
        ],
      }),
    });
    expect(screen.getByTestId('space-wait').textContent).toMatch(/1 write\s+\(4\.0 KiB\).*cannot be measured/s);
  });

  it('shows nothing about space when nothing waits', () => {
    render(Overview, { vm: vm({ state: 'running' }) });
    expect(screen.queryByTestId('space-wait')).toBeNull();
  });
});
