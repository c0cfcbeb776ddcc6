// `vm clone`: a new VM with the source's settings and its own disks, serials, MAC address and UEFI
// variable store. Full: every disk copied into Spindle's images directory, sparse-aware (cp
// --sparse=always --reflink=auto: holes stay holes, and a filesystem that can share extents
// (btrfs, xfs) clones them instantly). Linked: a qcow2 overlay per disk (qemu-img create -b SRC
// -F FMT), the source's image as its read-only base; the source is refused a start that would
// write its base until the user accepts it (refuseBaseWrites). The source must be stopped, so
// the copy or the base is consistent.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { VM_CONFIG_VERSION, type DiskConfig, type VmConfig } from '../../shared/model.js';
import { SpindleError } from '../../shared/errors.js';
import { detectFormat } from '../../dataplane/block/format-detect.js';
import { qemuImg } from '../images/qemu-img.js';

/** A locally administered unicast MAC in QEMU's 52:54:00 range. */
export function newMac(): string {
  const b = randomBytes(3);
  return `52:54:00:${[...b].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
}

/** A fresh virtio-blk serial (at most 20 characters). */
export const newSerial = (): string => `spindle-${randomBytes(5).toString('hex')}`;

/** The format qemu-img must read a base as: what its header says, else raw. */
export function baseFormat(disk: DiskConfig): string {
  return disk.format ?? (disk.kind === 'file' ? (detectFormat(disk.path) ?? 'raw') : 'raw');
}

export interface CloneStep {
  diskId: string;
  from: string;
  to: string;
  format: string;
}

/** The clone's config and the files to make, before anything is written. */
export function planClone(
  source: VmConfig,
  id: string,
  name: string,
  linked: boolean,
  imagesDir: string,
): { config: VmConfig; steps: CloneStep[] } {
  const steps: CloneStep[] = [];
  const disks = source.disks.map((d) => {
    const format = baseFormat(d);
    const to = join(imagesDir, `${id}-${d.id}.${linked ? 'qcow2' : format === 'raw' ? 'img' : format}`);
    steps.push({ diskId: d.id, from: d.path, to, format });
    const disk: DiskConfig = { ...d, path: to, kind: 'file', serial: newSerial() };
    // A full copy of an overlay still reads from the same base, so it keeps `backing`.
    if (linked) disk.backing = d.path;
    // A copy of a host device is an image file: the file defaults apply to it.
    if (d.kind === 'block') Object.assign(disk, { aio: 'threads', cache: 'writeback', nowait: 'off' });
    if (linked) disk.format = 'qcow2';
    return disk;
  });
  const { autostart: _a, ...rest } = source;
  const config: VmConfig = {
    ...rest,
    version: VM_CONFIG_VERSION,
    id,
    name,
    disks,
    network: { ...source.network, mac: newMac() },
    createdAt: new Date().toISOString(),
  };
  return { config, steps };
}

function cpSparse(from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('cp', ['--sparse=always', '--reflink=auto', '--no-preserve=all', '--', from, to], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('error', (e) => reject(new SpindleError('IO_ERROR', `Cannot run cp: ${e.message}.`)));
    p.on('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new SpindleError('IO_ERROR', `Copying ${from} to ${to} failed: ${err.trim().split('\n')[0] || `cp exited ${code}`}.`)),
    );
  });
}

/** Makes the clone's files; on any failure removes what it made and rethrows. */
export async function makeCloneFiles(
  steps: readonly CloneStep[],
  linked: boolean,
  imagesDir: string,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  mkdirSync(imagesDir, { recursive: true, mode: 0o700 });
  const made: string[] = [];
  try {
    for (const s of steps) {
      if (existsSync(s.to)) throw new SpindleError('CONFLICT', `${s.to} already exists; Spindle never overwrites an image.`);
      made.push(s.to);
      if (linked) await qemuImg(['create', '-q', '-f', 'qcow2', '-b', s.from, '-F', s.format, s.to], env);
      else await cpSparse(s.from, s.to);
    }
  } catch (err) {
    for (const p of made) rmSync(p, { force: true });
    throw err;
  }
}

/** Copies the source's UEFI variable store, when it has one, so boot entries carry over. */
export function copyNvram(from: string, to: string): boolean {
  if (!existsSync(from)) return false;
  if (existsSync(to)) throw new SpindleError('CONFLICT', `${to} already exists.`);
  copyFileSync(from, to);
  return true;
}

/** Refuses to start `config` while one of its disks is the read-only base of another VM's linked clone. */
export function refuseBaseWrites(config: VmConfig, all: readonly VmConfig[]): void {
  if (config.disks.every((d) => d.readOnly)) return;
  for (const d of config.disks) {
    if (d.readOnly) continue;
    const clones = all.filter((v) => v.id !== config.id && v.disks.some((c) => c.backing === d.path));
    if (clones.length) {
      throw new SpindleError(
        'BASE_IN_USE',
        `Disk ${d.id} of '${config.name}' is the base of the linked clone${clones.length > 1 ? 's' : ''} ${clones.map((c) => `'${c.name}'`).join(', ')}: ` +
          'writing it would silently corrupt them. Delete the clones (or make full clones instead), or start anyway to accept that (spindle vm start --allow-base-writes).',
      );
    }
  }
}
