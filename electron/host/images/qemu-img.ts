// Runs QEMU's own image tool, qemu-img, for what belongs to QEMU's code: creating qcow2 images,
// converting other formats, reading an image's metadata, qcow2 overlays for linked clones and
// internal snapshots (QEMU's code writes the snapshot tables). Always an argv (never a shell), so no
// path is ever parsed as a command; its failures become sentences.
import { spawn } from 'node:child_process';
import { SpindleError } from '../../shared/errors.js';

/** SPINDLE_QEMU_IMG, else qemu-img from PATH. */
export const qemuImgBinary = (env: NodeJS.ProcessEnv = process.env): string => env.SPINDLE_QEMU_IMG || 'qemu-img';

export interface QemuImgRun {
  stdout: string;
  stderr: string;
}

/** `qemu-img -p` progress lines: "    (42.00/100%)", separated by carriage returns. */
const PROGRESS = /\((\d+(?:\.\d+)?)\/100%\)/g;

/**
 * Runs `qemu-img args…`; resolves with its output, or rejects with a SpindleError whose sentence
 * is `what` and qemu-img's own last words. `onProgress` gets each percentage `-p` prints.
 */
export function runQemuImg(
  args: string[],
  what: string,
  opts: { onProgress?: (percent: number) => void; env?: NodeJS.ProcessEnv; signal?: AbortSignal } = {},
): Promise<QemuImgRun> {
  const bin = qemuImgBinary(opts.env);
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(opts.signal ? { signal: opts.signal } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk;
      if (opts.onProgress) for (const m of chunk.matchAll(PROGRESS)) opts.onProgress(Number(m[1]));
      if (stdout.length > 1 << 22) stdout = stdout.slice(-(1 << 20)); // progress output only grows
    });
    child.stderr.on('data', (chunk: string) => (stderr += chunk));
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT')
        reject(new SpindleError('NOT_FOUND', `${what}: qemu-img is not installed (Debian/Ubuntu package qemu-utils, Fedora qemu-img).`));
      else if (err.name === 'AbortError') reject(new SpindleError('CANCELLED', `${what}: cancelled.`));
      else reject(new SpindleError('IO_ERROR', `${what}: qemu-img could not run: ${err.message}.`));
    });
    child.on('close', (code, signal) => {
      if (code === 0) return resolve({ stdout, stderr });
      const said = stderr
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => l.replace(/^qemu-img: /, ''))
        .join(' ');
      reject(
        new SpindleError('IO_ERROR', `${what}: qemu-img ${signal ? `was stopped by ${signal}` : `failed`}${said ? `: ${said}` : '.'}`),
      );
    });
  });
}

/** What `qemu-img info --output=json` says of one image (the fields Spindle shows). */
export interface QemuImgInfo {
  filename: string;
  format: string;
  'virtual-size': number;
  'actual-size'?: number;
  'cluster-size'?: number;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  'format-specific'?: { type: string; data?: { compat?: string; 'refcount-bits'?: number; corrupt?: boolean } };
  'dirty-flag'?: boolean;
}

/** The image and each image it rests on, top first (`--backing-chain`). `format` is given so
 *  qemu-img never probes (the stored format decides, see host/vm/disk-format.ts). */
export async function qemuImgChain(path: string, format: string, env?: NodeJS.ProcessEnv): Promise<QemuImgInfo[]> {
  const { stdout } = await runQemuImg(
    ['info', '--output=json', '--backing-chain', '-U', '-f', format, path],
    `Reading ${path}`,
    env ? { env } : {},
  );
  const parsed: unknown = JSON.parse(stdout);
  return (Array.isArray(parsed) ? parsed : [parsed]) as QemuImgInfo[];
}

/** An --image-opts spec naming PATH as qcow2, for the subcommands without -f (snapshot): the
 *  stored format decides, qemu-img never probes. Commas in the path are doubled (QEMU's escaping). */
export const qcow2ImageOpts = (path: string): string => `driver=qcow2,file.filename=${path.replace(/,/g, ',,')}`;

/** Runs `qemu-img args…` and resolves with its stdout (no progress); failures as runQemuImg's. */
export async function qemuImg(args: readonly string[], env?: NodeJS.ProcessEnv): Promise<string> {
  return (await runQemuImg([...args], `qemu-img ${args[0]}`, env ? { env } : {})).stdout;
}

export interface ImageSnapshot {
  id: string;
  name: string;
  /** When it was taken (ISO time). */
  date: string;
  /** Bytes of saved VM state (0: disk-only, which is all Spindle takes). */
  vmStateSize: number;
}

/** One qcow2 image's size on the host and its internal snapshots (`-f qcow2`: never probed). */
export async function qcow2Snapshots(path: string, env?: NodeJS.ProcessEnv): Promise<{ actualSize: number; snapshots: ImageSnapshot[] }> {
  const raw = JSON.parse(await qemuImg(['info', '--output=json', '-U', '-f', 'qcow2', path], env)) as QemuImgInfo & {
    snapshots?: { id: string; name: string; 'date-sec': number; 'date-nsec': number; 'vm-state-size': number }[];
  };
  return {
    actualSize: raw['actual-size'] ?? 0,
    snapshots: (raw.snapshots ?? []).map((s) => ({
      id: s.id,
      name: s.name,
      date: new Date(s['date-sec'] * 1000 + Math.floor(s['date-nsec'] / 1e6)).toISOString(),
      vmStateSize: s['vm-state-size'],
    })),
  };
}
