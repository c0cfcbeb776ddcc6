// VM snapshots as INTERNAL qcow2 snapshots, one per disk under one name, through
// `qemu-img snapshot -c/-a/-d` (QEMU's own code writes the snapshot tables) and `qemu-img info`
// (the list). Why internal rather than external overlays: one file per disk whatever the number
// of snapshots, a revert is instant (the L1 table is switched, nothing is copied), and deleting
// a snapshot frees its clusters in place with no merge into a neighbour layer (so no long
// background job and no window where the chain is half-merged). The cost: a snapshot lives
// inside the image, so it goes with it.
//
// Disk-only: no RAM is saved. These functions act on closed images: on a running VM the caller
// releases its disks first (live-disks.ts). Raw images carry no snapshot table: refused with a
// sentence. Read-only disks never change and are left out.
import { SpindleError } from '../../shared/errors.js';
import type { DiskConfig, VmConfig } from '../../shared/model.js';
import { detectFormat } from '../../dataplane/block/format-detect.js';
import { qcow2ImageOpts, qcow2Snapshots, qemuImg } from '../images/qemu-img.js';

export interface DiskSnapshot {
  diskId: string;
  /** Bytes of the disk image on the host now (all its snapshots share it). */
  imageBytes: number;
}

export interface VmSnapshot {
  name: string;
  /** When it was taken (ISO time; the oldest disk's). */
  date: string;
  /** The disks that hold it. */
  disks: string[];
  /** False when some snapshotted disk lacks it (a disk added later, or removed by hand). */
  complete: boolean;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._ -]{0,62}$/;

export function checkSnapshotName(name: string): void {
  if (!NAME_RE.test(name) || /^\d+$/.test(name))
    throw new SpindleError(
      'INVALID_ARGUMENT',
      `'${name.slice(0, 64)}' is not a snapshot name: use 1–63 letters, digits, spaces, dots, dashes or underscores, starting with a letter or digit, and not only digits (qemu-img would read those as an id).`,
    );
}

function formatOf(d: DiskConfig): string {
  if (d.kind === 'block') return 'raw';
  return d.format ?? detectFormat(d.path) ?? 'raw';
}

/** The disks a snapshot covers: every writable disk, each a qcow2 image; a raw one is refused with a sentence. */
export function snapshotDisks(config: VmConfig): DiskConfig[] {
  const disks = config.disks.filter((d) => !d.readOnly);
  if (!disks.length) throw new SpindleError('CONFLICT', `VM '${config.name}' has no writable disk, so there is nothing to snapshot.`);
  const raw = disks.filter((d) => formatOf(d) !== 'qcow2');
  if (raw.length) {
    throw new SpindleError(
      'UNSUPPORTED_FORMAT',
      `Snapshots need qcow2 images, and ${raw.map((d) => `${d.id} (${d.path})`).join(', ')} ${raw.length > 1 ? 'are raw' : 'is raw'}: a raw image has no room for them. ` +
        'Convert it with qemu-img convert -O qcow2 while the VM is stopped and attach the copy, or make a linked clone and snapshot that.',
    );
  }
  return disks;
}

/** Every snapshot of the VM, oldest first, merged by name across its disks. */
export async function listSnapshots(
  config: VmConfig,
  env?: NodeJS.ProcessEnv,
): Promise<{ snapshots: VmSnapshot[]; disks: DiskSnapshot[] }> {
  const disks = snapshotDisks(config);
  const byName = new Map<string, VmSnapshot>();
  const out: DiskSnapshot[] = [];
  for (const d of disks) {
    const info = await qcow2Snapshots(d.path, env);
    out.push({ diskId: d.id, imageBytes: info.actualSize });
    for (const s of info.snapshots) {
      const v = byName.get(s.name) ?? { name: s.name, date: s.date, disks: [], complete: false };
      if (s.date < v.date) v.date = s.date;
      v.disks.push(d.id);
      byName.set(s.name, v);
    }
  }
  const snapshots = [...byName.values()].map((v) => ({ ...v, complete: v.disks.length === disks.length }));
  snapshots.sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : a.name.localeCompare(b.name)));
  return { snapshots, disks: out };
}

export async function createSnapshot(config: VmConfig, name: string, env?: NodeJS.ProcessEnv): Promise<void> {
  checkSnapshotName(name);
  const disks = snapshotDisks(config);
  const { snapshots } = await listSnapshots(config, env);
  if (snapshots.some((s) => s.name === name))
    throw new SpindleError('CONFLICT', `VM '${config.name}' already has a snapshot named '${name}'.`);
  const done: DiskConfig[] = [];
  try {
    for (const d of disks) {
      await qemuImg(['snapshot', '--image-opts', '-c', name, qcow2ImageOpts(d.path)], env);
      done.push(d);
    }
  } catch (err) {
    // All disks or none: a half-taken snapshot would revert some disks and not others.
    for (const d of done) await qemuImg(['snapshot', '--image-opts', '-d', name, qcow2ImageOpts(d.path)], env).catch(() => undefined);
    throw err;
  }
}

export async function revertSnapshot(config: VmConfig, name: string, env?: NodeJS.ProcessEnv): Promise<void> {
  const disks = snapshotDisks(config);
  const snap = (await listSnapshots(config, env)).snapshots.find((s) => s.name === name);
  if (!snap) throw new SpindleError('NOT_FOUND', `VM '${config.name}' has no snapshot named '${name}'.`);
  if (!snap.complete) {
    const missing = disks.filter((d) => !snap.disks.includes(d.id)).map((d) => d.id);
    throw new SpindleError(
      'CONFLICT',
      `Snapshot '${name}' does not cover disk${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (added after it was taken); detach them to revert the others.`,
    );
  }
  for (const d of disks) await qemuImg(['snapshot', '--image-opts', '-a', name, qcow2ImageOpts(d.path)], env);
}

export async function deleteSnapshot(config: VmConfig, name: string, env?: NodeJS.ProcessEnv): Promise<void> {
  const disks = snapshotDisks(config);
  const snap = (await listSnapshots(config, env)).snapshots.find((s) => s.name === name);
  if (!snap) throw new SpindleError('NOT_FOUND', `VM '${config.name}' has no snapshot named '${name}'.`);
  for (const d of disks)
    if (snap.disks.includes(d.id)) await qemuImg(['snapshot', '--image-opts', '-d', name, qcow2ImageOpts(d.path)], env);
}
