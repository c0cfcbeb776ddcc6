// qemu-img, the one tool Spindle runs on image files it does not write itself: qcow2 overlays
// for linked clones and internal snapshots (QEMU's own code writes the qcow2 snapshot tables).
// Arguments go as an argv array, never through a shell.
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { SpindleError } from '../../shared/errors.js';

/** $SPINDLE_QEMU_IMG, else qemu-img on PATH. */
export function findQemuImg(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SPINDLE_QEMU_IMG) return env.SPINDLE_QEMU_IMG;
  for (const dir of (env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const p = join(dir, 'qemu-img');
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  throw new SpindleError('NOT_FOUND', 'qemu-img is not installed (Debian package qemu-utils); snapshots and linked clones need it.');
}

/** Runs qemu-img; its stderr's first line becomes the sentence of the error. */
export function qemuImg(args: readonly string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 600_000): Promise<string> {
  const bin = findQemuImg(env);
  return new Promise((resolve, reject) => {
    execFile(bin, [...args], { env, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const why =
        stderr
          .trim()
          .split('\n')[0]
          ?.replace(/^qemu-img: /, '') || err.message;
      reject(new SpindleError('IO_ERROR', `qemu-img ${args[0]} failed: ${why}`));
    });
  });
}

export interface ImageSnapshot {
  id: string;
  name: string;
  /** When it was taken (ISO time). */
  date: string;
  /** Bytes of saved VM state (0: disk-only, which is all Spindle takes). */
  vmStateSize: number;
}

export interface ImageInfo {
  format: string;
  virtualSize: number;
  /** Bytes the image occupies on the host. */
  actualSize: number;
  backingFile?: string;
  snapshots: ImageSnapshot[];
}

interface RawInfo {
  format: string;
  'virtual-size': number;
  'actual-size'?: number;
  'backing-filename'?: string;
  snapshots?: { id: string; name: string; 'date-sec': number; 'date-nsec': number; 'vm-state-size': number }[];
}

/** `qemu-img info --output=json` of one image (no backing chain). */
export async function imageInfo(path: string, env: NodeJS.ProcessEnv = process.env): Promise<ImageInfo> {
  const raw = JSON.parse(await qemuImg(['info', '--output=json', path], env)) as RawInfo;
  return {
    format: raw.format,
    virtualSize: raw['virtual-size'],
    actualSize: raw['actual-size'] ?? 0,
    ...(raw['backing-filename'] ? { backingFile: raw['backing-filename'] } : {}),
    snapshots: (raw.snapshots ?? []).map((s) => ({
      id: s.id,
      name: s.name,
      date: new Date(s['date-sec'] * 1000 + Math.floor(s['date-nsec'] / 1e6)).toISOString(),
      vmStateSize: s['vm-state-size'],
    })),
  };
}
