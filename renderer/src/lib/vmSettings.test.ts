import { describe, expect, it } from 'vitest';
import { bootDevices, draftOf, patchOf } from './vmSettings.js';
import type { VmConfig } from '../../../electron/shared/model.js';

const config: VmConfig = {
  version: 1,
  id: 'a',
  name: 'A',
  cpus: 1,
  memoryMiB: 512,
  firmware: 'bios',
  boot: { kind: 'iso', path: '/iso/inst.iso' },
  disks: [
    {
      id: 'd0',
      path: '/img/a.img',
      kind: 'file',
      aio: 'threads',
      cache: 'writeback',
      nowait: 'off',
      readOnly: false,
      queues: 1,
      serial: 's',
    },
  ],
  network: { user: true, mac: '52:54:00:01:02:03' },
  display: 'vnc',
  createdAt: '',
};

describe('VM settings draft', () => {
  it('an untouched draft changes nothing (an old file without a machine type stays pc)', () => {
    expect(patchOf(config, draftOf(config))).toEqual({});
  });
  it('sends only what changed, keeping the MAC address with a network change', () => {
    const d = draftOf(config);
    d.memoryMiB = 1024;
    d.forwards.push({ proto: 'tcp', hostAddress: '127.0.0.1', hostPort: 2222, guestPort: 22 });
    expect(patchOf(config, d)).toEqual({
      memoryMiB: 1024,
      network: { user: true, forwards: [{ proto: 'tcp', hostPort: 2222, guestPort: 22 }], mac: '52:54:00:01:02:03' },
    });
  });
  it('a bridge replaces user networking; the boot devices follow the draft', () => {
    const d = draftOf(config);
    d.netMode = 'bridge';
    d.bridge = 'br0';
    d.cdroms = ['', '/iso/drivers.iso'];
    expect(patchOf(config, d).network).toEqual({ user: false, bridge: 'br0', mac: '52:54:00:01:02:03' });
    expect(patchOf(config, d).cdroms).toEqual([null, '/iso/drivers.iso']);
    expect(bootDevices(d, config.disks).map((x) => x.id)).toEqual(['cd0', 'cd1', 'cd2', 'd0', 'net0']);
  });
});
