// A minimal Linux guest for the VM manager's lifecycle tests: Debian's kernel and an initramfs
// with busybox and the virtio-blk modules, whose init prints a marker and runs a shell on the
// serial console (ttyS0). Tests talk to it through the manager's serial console.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, copyFileSync, chmodSync, readdirSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VmManager } from '../../electron/vm/manager.js';

export const READY = 'SPINDLE-VM-READY';
const MODULES = ['virtio_ring', 'virtio', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_pci', 'virtio_blk'];

export function guestKernel(): { kernel: string; moduleDir: string } {
  const v = readdirSync('/boot').filter((n) => n.startsWith('vmlinuz-')).map((n) => n.slice(8)).filter((v) => existsSync(`/lib/modules/${v}/modules.dep`)).sort().at(-1);
  if (!v) throw new Error('no guest kernel: apt-get install linux-image-amd64');
  return { kernel: `/boot/vmlinuz-${v}`, moduleDir: `/lib/modules/${v}` };
}

/** Builds the initramfs into a fresh temp dir; returns its path and a cleanup. */
export function buildInitramfs(): { kernel: string; initrd: string; cleanup(): void } {
  const { kernel, moduleDir } = guestKernel();
  const dir = mkdtempSync(join(tmpdir(), 'spindle-vm-guest-'));
  const root = join(dir, 'root');
  for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp', 'lib/modules']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
  chmodSync(join(root, 'bin/busybox'), 0o755);
  const deps = execFileSync('cat', [join(moduleDir, 'modules.dep')], { encoding: 'utf8' });
  for (const m of MODULES) {
    const line = deps.split('\n').find((l) => l.split(':')[0]!.endsWith(`/${m}.ko`));
    if (!line) throw new Error(`module ${m} not found in ${moduleDir}`);
    copyFileSync(join(moduleDir, line.split(':')[0]!), join(root, 'lib/modules', `${m}.ko`));
  }
  writeFileSync(join(root, 'init'), `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in ${MODULES.join(' ')}; do insmod /lib/modules/$m.ko; done
echo ${READY}
exec sh </dev/ttyS0 >/dev/ttyS0 2>&1
`);
  chmodSync(join(root, 'init'), 0o755);
  const initrd = join(dir, 'initrd.cpio');
  execFileSync('sh', ['-c', `cd "${root}" && find . | cpio -o -H newc --quiet > "${initrd}"`]);
  return { kernel, initrd, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Collects a VM's serial output and waits for patterns in it. */
export class SerialWatch {
  text = '';
  private readonly off: () => void;
  constructor(private readonly manager: VmManager, private readonly vmId: string) {
    const fn = (e: { vmId: string; data: Buffer }) => {
      if (e.vmId === vmId) this.text += e.data.toString('latin1');
    };
    manager.on('serial', fn);
    this.off = () => manager.off('serial', fn);
  }
  async waitFor(re: RegExp, timeoutMs = 120_000, from = 0): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.text.slice(from).match(re);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`serial: ${re} not seen within ${timeoutMs} ms; last output:\n${this.text.slice(-1500)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  /** Runs a shell command in the guest and returns its output (between unique markers). */
  async run(cmd: string, timeoutMs = 120_000): Promise<string> {
    const tag = `M${Math.random().toString(36).slice(2, 8)}`;
    const from = this.text.length;
    this.manager.serialInput(this.vmId, Buffer.from(`echo ${tag}B; ${cmd}; echo ${tag}E $?\n`));
    const m = await this.waitFor(new RegExp(`${tag}B\\r?\\n([\\s\\S]*?)${tag}E (\\d+)`), timeoutMs, from);
    if (m[2] !== '0') throw new Error(`guest command failed (${m[2]}): ${cmd}\n${m[1]}`);
    return m[1]!.replace(/\r/g, '');
  }
  close(): void {
    this.off();
  }
}
