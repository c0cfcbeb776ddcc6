// The scratch disk: on first start with no VMs, a sparse image in the data directory, so the aio
// comparison and the live chart work with no VM and no QEMU (issue 5 §5).
import { mkdirSync, openSync, closeSync, ftruncateSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { dataDir } from '../vm/paths.js';
import { SpindleError, errnoOf } from '../errors.js';

export const SCRATCH_SIZE_BYTES = 1 << 30;

export function scratchPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(dataDir(env), 'scratch.img');
}

/** Creates the scratch image if there are no VMs and it does not exist yet; returns its path
 *  when it exists afterwards, else null. Never touches an existing file. */
export function ensureScratchDisk(vmCount: number, env: NodeJS.ProcessEnv = process.env): string | null {
  const path = scratchPath(env);
  if (existsSync(path)) return path;
  if (vmCount > 0) return null;
  try {
    mkdirSync(dataDir(env), { recursive: true, mode: 0o700 });
    const fd = openSync(path, 'wx', 0o600); // 'wx': never truncates something that appeared meanwhile
    try {
      ftruncateSync(fd, SCRATCH_SIZE_BYTES); // sparse: no blocks allocated
    } finally {
      closeSync(fd);
    }
    return path;
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') return path;
    throw new SpindleError('IO_ERROR', `Spindle could not create its scratch disk at ${path}: ${(err as Error).message}.`, errnoOf(err));
  }
}
