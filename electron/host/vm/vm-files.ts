// Which files belong to a VM and may go with it. `vm delete` removes the disk images Spindle made
// for it (files under its data directory's images/ folder: new images, clones' copies and
// overlays) and its UEFI variable store; a file the user attached from elsewhere, a host block
// device, and an image another VM uses (a shared disk, or the base of a linked clone) are kept,
// each with the reason. Only regular files are ever removed.
import { lstatSync, realpathSync, rmSync } from 'node:fs';
import { join, sep } from 'node:path';
import type { VmConfig } from '../../shared/model.js';
import { dataDir } from './paths.js';

/** Where Spindle puts the images it makes ($XDG_DATA_HOME/spindle/images). */
export const imagesDir = (env: NodeJS.ProcessEnv = process.env): string => join(dataDir(env), 'images');

function real(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/** True when `path` is inside Spindle's images directory (symlinks resolved). */
export function isSpindleImage(path: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const dir = real(imagesDir(env));
  return real(path).startsWith(dir + sep);
}

/** The other VMs that use `path`: as a disk, or as the base of a linked clone's overlay. */
export function otherUsers(path: string, vmId: string, all: readonly VmConfig[]): string[] {
  return all.filter((v) => v.id !== vmId && v.disks.some((d) => d.path === path || d.backing === path)).map((v) => v.name);
}

export interface DeletePlan {
  remove: string[];
  keep: { path: string; reason: string }[];
}

/** What deleting `config` with its disks removes and keeps. `nvram`: its UEFI variable store, when one exists. */
export function planDiskRemoval(config: VmConfig, all: readonly VmConfig[], env: NodeJS.ProcessEnv, nvram?: string): DeletePlan {
  const plan: DeletePlan = { remove: [], keep: [] };
  for (const d of config.disks) {
    const users = otherUsers(d.path, config.id, all);
    if (d.kind === 'block') plan.keep.push({ path: d.path, reason: 'a host block device: Spindle never erases devices.' });
    else if (users.length)
      plan.keep.push({
        path: d.path,
        reason: `also used by ${users.map((n) => `'${n}'`).join(', ')} (a shared disk or a linked clone's base).`,
      });
    else if (!isSpindleImage(d.path, env))
      plan.keep.push({ path: d.path, reason: `attached from outside ${imagesDir(env)}: your file, kept.` });
    else plan.remove.push(d.path);
  }
  if (nvram) plan.remove.push(nvram);
  return plan;
}

/** Removes the plan's files (regular files only); answers with what was removed and what was kept. */
export function removeFiles(plan: DeletePlan): { deletedFiles: string[]; keptFiles: { path: string; reason: string }[] } {
  const deletedFiles: string[] = [];
  const keptFiles = [...plan.keep];
  for (const p of plan.remove) {
    try {
      if (!lstatSync(p).isFile()) {
        keptFiles.push({ path: p, reason: 'not a regular file, so it was left alone.' });
        continue;
      }
      rmSync(p);
      deletedFiles.push(p);
    } catch (err) {
      keptFiles.push({ path: p, reason: `could not be removed: ${(err as Error).message}.` });
    }
  }
  return { deletedFiles, keptFiles };
}

/** A VM's UEFI variable store (config-service.ts firmwareFor makes it on first boot). */
export const nvramPath = (storeDir: string, id: string, nvramDir?: string): string =>
  join(nvramDir ?? join(storeDir, '..', 'nvram'), `${id}_VARS.fd`);
