// The scratch disk: a sparse raw image in the data directory, made on first start when
// there are no VMs, so the aio comparison and the live chart work with no VM and no QEMU.
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ScratchDisk } from '../../shared/api.js';
import { createImage } from '../images/create-image.js';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import { dataDir } from './paths.js';

export const SCRATCH_SIZE_BYTES = 1 << 30;

export function scratchPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(dataDir(env), 'scratch.img');
}

/** Where the scratch disk is and whether it exists (never creates it). */
export function scratchInfo(env: NodeJS.ProcessEnv = process.env): ScratchDisk {
  const path = scratchPath(env);
  try {
    return { path, exists: true, sizeBytes: statSync(path).size };
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return { path, exists: false, sizeBytes: null };
    throw new SpindleError('IO_ERROR', `Spindle cannot look at its scratch disk ${path}: ${(err as Error).message}.`, errnoOf(err));
  }
}

/** Makes the scratch disk (sparse, SCRATCH_SIZE_BYTES) unless it exists; an existing file is never touched. */
export function createScratchDisk(env: NodeJS.ProcessEnv = process.env): ScratchDisk {
  const path = scratchPath(env);
  try {
    mkdirSync(dataDir(env), { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new SpindleError(
      'IO_ERROR',
      `Spindle could not create its data directory ${dataDir(env)}: ${(err as Error).message}.`,
      errnoOf(err),
    );
  }
  try {
    // O_EXCL: never truncates a file that appeared meanwhile. Only its owner reads a guest's disk.
    createImage(path, SCRATCH_SIZE_BYTES, { mode: 0o600 });
  } catch (err) {
    if (!(err instanceof SpindleError && err.code === 'CONFLICT')) {
      throw new SpindleError(
        (err as SpindleError).code ?? 'IO_ERROR',
        `Spindle could not create its scratch disk: ${(err as Error).message}`,
        errnoOf(err),
      );
    }
  }
  return scratchInfo(env);
}

/**
 * First start: creates the scratch disk when there are no VMs and it does not exist yet. Returns
 * its path when it exists afterwards, else null (VMs exist and no scratch disk was ever made).
 */
export function ensureScratchDisk(vmCount: number, env: NodeJS.ProcessEnv = process.env): string | null {
  const info = scratchInfo(env);
  if (info.exists) return info.path;
  if (vmCount > 0) return null;
  return createScratchDisk(env).path;
}
