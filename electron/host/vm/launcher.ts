// Everything about turning a VM config into a QEMU process: finding the binary, choosing the
// accelerator, and building argv (always an array, never a shell string).
import { openSync, closeSync, accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { delimiter, join, isAbsolute } from 'node:path';
import type { VmConfig } from '../../shared/model.js';
import { SpindleError } from '../../shared/errors.js';

export const QEMU_BINARY = 'qemu-system-x86_64';
export const QEMU_PACKAGE = 'qemu-system-x86';

export const OVMF_CODE_CANDIDATES = ['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_CODE.fd'];
export const OVMF_VARS_FOR: Record<string, string> = {
  '/usr/share/OVMF/OVMF_CODE_4M.fd': '/usr/share/OVMF/OVMF_VARS_4M.fd',
  '/usr/share/OVMF/OVMF_CODE.fd': '/usr/share/OVMF/OVMF_VARS.fd',
};

/** The QEMU binary: an explicit path (SPINDLE_QEMU or the caller's), else qemu-system-x86_64 on PATH. */
export function findQemu(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  const wanted = explicit ?? env.SPINDLE_QEMU;
  if (wanted) {
    if (!isAbsolute(wanted) || !isExecutableFile(wanted)) {
      throw new SpindleError(
        'QEMU_MISSING',
        `QEMU was not found at ${wanted}. Install the Debian package ${QEMU_PACKAGE} (apt install ${QEMU_PACKAGE}) or point SPINDLE_QEMU at qemu-system-x86_64.`,
      );
    }
    return wanted;
  }
  for (const dir of (env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, QEMU_BINARY);
    if (isExecutableFile(p)) return p;
  }
  throw new SpindleError(
    'QEMU_MISSING',
    `QEMU is not installed: Spindle needs ${QEMU_BINARY}, from the Debian package ${QEMU_PACKAGE} (apt install ${QEMU_PACKAGE}).`,
  );
}

function isExecutableFile(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

export interface AcceleratorChoice {
  accel: 'kvm' | 'tcg';
  /** Visible warning when falling back to TCG. */
  warning?: string;
}

/** KVM when /dev/kvm opens read-write (exists, and we are in its group) and the CPU advertises
 *  hardware virtualisation; otherwise TCG, with why. A paravirtual /dev/kvm without vmx/svm (as in
 *  some sandboxes) accepts a VM and then hangs the guest's kernel. */
export function chooseAccelerator(kvmPath = '/dev/kvm', cpuinfo = '/proc/cpuinfo'): AcceleratorChoice {
  try {
    closeSync(openSync(kvmPath, 'r+'));
    let flags = '';
    try {
      flags = readFileSync(cpuinfo, 'utf8');
    } catch {
      /* no procfs: trust /dev/kvm */
    }
    if (flags && !/^flags\s*:.*\b(vmx|svm)\b/m.test(flags)) {
      return {
        accel: 'tcg',
        warning: `KVM is not usable: ${kvmPath} opens but the CPU does not advertise hardware virtualisation (vmx/svm). VMs run under TCG emulation, which is many times slower.`,
      };
    }
    return { accel: 'kvm' };
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why =
      code === 'ENOENT'
        ? `${kvmPath} does not exist (no hardware virtualisation, or the kvm module is not loaded)`
        : code === 'EACCES' || code === 'EPERM'
          ? `you may not open ${kvmPath} (add yourself to the 'kvm' group and log in again)`
          : `${kvmPath} cannot be opened (${code ?? 'unknown error'})`;
    return { accel: 'tcg', warning: `KVM is not usable: ${why}. VMs run under TCG emulation, which is many times slower.` };
  }
}

const kvmProbeCache = new Map<string, Promise<string | null>>();

/**
 * Whether QEMU can actually run a vCPU under KVM: some hosts (nested or emulated KVM) open
 * /dev/kvm fine and then fail on the first vCPU register write. Runs `binary` for a moment with
 * the CPU model Spindle uses, once per binary; resolves null when it works, else the reason.
 */
export function probeKvm(binary: string): Promise<string | null> {
  let p = kvmProbeCache.get(binary);
  if (!p) {
    p = new Promise((resolve) => {
      const proc = spawn(
        binary,
        [
          '-accel',
          'kvm',
          '-cpu',
          'host',
          '-machine',
          'pc',
          '-m',
          '32',
          '-nodefaults',
          '-no-user-config',
          '-display',
          'none',
          '-qmp',
          'stdio',
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      let stderr = '';
      proc.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      proc.stdout!.resume();
      proc.stdin!.on('error', () => {});
      proc.stdin!.write('{"execute":"qmp_capabilities"}\n');
      const timer = setTimeout(() => proc.stdin!.end('{"execute":"quit"}\n'), 700);
      proc.once('error', (err) => {
        clearTimeout(timer);
        resolve(err.message);
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        const line = stderr.split('\n').find((l) => /error|assert/i.test(l));
        resolve(code === 0 && !line ? null : (line ?? `QEMU exited with code ${code}`).replace(/^.*?qemu-system-x86_64: /, ''));
      });
    });
    kvmProbeCache.set(binary, p);
  }
  return p;
}

/** The accelerator for a launch: SPINDLE_ACCEL=tcg|kvm forces one; otherwise KVM when /dev/kvm opens and QEMU runs a vCPU on it. */
export async function resolveAccelerator(
  binary: string,
  env: NodeJS.ProcessEnv = process.env,
  kvmPath = '/dev/kvm',
): Promise<AcceleratorChoice> {
  const forced = env.SPINDLE_ACCEL;
  if (forced === 'tcg')
    return { accel: 'tcg', warning: 'KVM is turned off (SPINDLE_ACCEL=tcg). VMs run under TCG emulation, which is many times slower.' };
  const choice = chooseAccelerator(kvmPath);
  if (choice.accel === 'tcg' || forced === 'kvm') return choice;
  const broken = await probeKvm(binary);
  return broken === null
    ? choice
    : { accel: 'tcg', warning: `KVM is not usable here (QEMU: ${broken}). VMs run under TCG emulation, which is many times slower.` };
}

export function findOvmf(): { code: string; varsTemplate: string } | null {
  for (const code of OVMF_CODE_CANDIDATES) {
    const vars = OVMF_VARS_FOR[code]!;
    if (existsSync(code) && existsSync(vars)) return { code, varsTemplate: vars };
  }
  return null;
}

export interface LaunchPaths {
  qmp: string;
  serial: string;
  /** Absent: no display. */
  vnc?: string;
  /** Disk socket per disk id. */
  disks: Record<string, string>;
  /** UEFI: the firmware code and this VM's own variable store. */
  firmware?: { code: string; vars: string };
}

/** Socket for one disk of a VM, inside the VM's runtime directory. */
export const diskSocketName = (diskId: string): string => `${diskId}.sock`;
export const chardevIdOf = (diskId: string): string => `chr-${diskId}`;

/** QEMU's argv (without the binary) for `config`. QEMU starts paused (-S): the manager connects
 *  QMP and the serial console, then sends `cont`, so no event or output is missed. */
export function buildQemuArgv(config: VmConfig, paths: LaunchPaths, accel: 'kvm' | 'tcg'): string[] {
  const json = (o: unknown) => JSON.stringify(o);
  const a: string[] = ['-name', `${config.id},debug-threads=on`, '-nodefaults', '-no-user-config', '-msg', 'timestamp=on'];
  // i440fx ('pc') rather than q35: PCI hot-plug works on its root bus without pre-made root ports.
  const machine = ['pc'];
  if (config.firmware === 'uefi') {
    if (!paths.firmware)
      throw new SpindleError('INVALID_ARGUMENT', `VM '${config.name}' uses UEFI, but no OVMF firmware is installed (Debian package ovmf).`);
    a.push('-blockdev', json({ driver: 'file', filename: paths.firmware.code, 'node-name': 'fw-code', 'read-only': true }));
    a.push('-blockdev', json({ driver: 'file', filename: paths.firmware.vars, 'node-name': 'fw-vars' }));
    machine.push('pflash0=fw-code', 'pflash1=fw-vars');
  }
  a.push('-machine', machine.join(','));
  a.push('-accel', accel, '-cpu', accel === 'kvm' ? 'host' : 'max');
  a.push('-smp', String(config.cpus));
  // vhost-user needs guest RAM in shared memory the disk servers can map.
  a.push('-m', `${config.memoryMiB}M`);
  a.push('-object', `memory-backend-memfd,id=mem,size=${config.memoryMiB}M,share=on`);
  a.push('-numa', 'node,memdev=mem');

  a.push('-chardev', `socket,id=qmp,path=${optPath(paths.qmp)},server=on,wait=off`);
  a.push('-mon', 'chardev=qmp,mode=control');
  a.push('-chardev', `socket,id=serial0,path=${optPath(paths.serial)},server=on,wait=off`);
  a.push('-serial', 'chardev:serial0');

  if (paths.vnc) {
    a.push('-device', 'VGA', '-display', 'none', '-vnc', `unix:${optPath(paths.vnc)}`);
  } else {
    a.push('-display', 'none');
  }

  const boot = config.boot;
  if (boot.kind === 'kernel') {
    a.push('-kernel', boot.kernel);
    if (boot.initrd) a.push('-initrd', boot.initrd);
    if (boot.cmdline) a.push('-append', boot.cmdline);
  } else if (boot.kind === 'iso') {
    a.push('-blockdev', json({ driver: 'file', filename: boot.path, 'node-name': 'cdrom0', 'read-only': true }));
    a.push('-device', 'ide-cd,drive=cdrom0,bootindex=0');
  }

  config.disks.forEach((disk, i) => {
    const sock = paths.disks[disk.id];
    if (!sock) throw new SpindleError('INTERNAL', `No socket was prepared for disk ${disk.id}.`);
    a.push('-chardev', `socket,id=${chardevIdOf(disk.id)},path=${optPath(sock)},reconnect=1`);
    const dev = [`vhost-user-blk-pci`, `chardev=${chardevIdOf(disk.id)}`, `id=${disk.id}`, `num-queues=${disk.queues}`];
    if (boot.kind === 'disk' && i === 0) dev.push('bootindex=0');
    a.push('-device', dev.join(','));
  });

  if (config.network.user) {
    a.push('-netdev', 'user,id=net0', '-device', `virtio-net-pci,netdev=net0${config.network.mac ? `,mac=${config.network.mac}` : ''}`);
  }
  a.push('-S');
  return a;
}

/** QEMU's option parser splits on commas; a literal comma in a value is written twice. */
function optPath(p: string): string {
  return p.replace(/,/g, ',,');
}
