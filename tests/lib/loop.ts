// Real block devices and filesystems for tests: loop devices over files, tiny mounted filesystems.
// Everything returned has a cleanup that tests call in `finally` (or t.after).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, truncateSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const run = (cmd: string, args: string[]): string =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

export function tempDir(prefix = 'spindle-test-', base = tmpdir()): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(base, prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/** A file of `sizeBytes`: sparse (truncated), or fully written with `fill` when `written` is set. */
export function makeFile(path: string, sizeBytes: number, opts: { written?: boolean } = {}): string {
  if (opts.written) {
    const fd = openSync(path, 'w');
    const chunk = Buffer.alloc(1 << 20, 0xa5);
    try {
      for (let off = 0; off < sizeBytes; off += chunk.length) writeFileSync(fd, chunk.subarray(0, Math.min(chunk.length, sizeBytes - off)));
    } finally {
      closeSync(fd);
    }
  } else {
    writeFileSync(path, '');
    truncateSync(path, sizeBytes);
  }
  return path;
}

export interface LoopDevice {
  device: string;
  backingFile: string;
  detach(): void;
}

/** Attaches a loop device over `backingFile` (with direct I/O on the backing file when asked). */
export function attachLoop(backingFile: string, opts: { directIo?: boolean; sectorSize?: number } = {}): LoopDevice {
  const args = ['-f', '--show'];
  if (opts.directIo) args.push('--direct-io=on');
  if (opts.sectorSize) args.push('--sector-size', String(opts.sectorSize));
  const device = run('losetup', [...args, backingFile]);
  let attached = true;
  return {
    device,
    backingFile,
    detach() {
      if (!attached) return;
      attached = false;
      try {
        run('losetup', ['-d', device]);
      } catch {
        /* already gone */
      }
    },
  };
}

export interface MountedFs {
  device: LoopDevice;
  mountpoint: string;
  cleanup(): void;
}

/** A filesystem of `sizeMiB` on a loop device, mounted in a fresh directory (`loopDirectIo`: the
 *  loop device reads and writes its backing file with direct I/O, so the disk under `base` is hit). */
export function mountFs(
  type: 'ext4' | 'xfs',
  sizeMiB: number,
  opts: { base?: string; mountOptions?: string; loopDirectIo?: boolean } = {},
): MountedFs {
  const dir = tempDir(`spindle-${type}-`, opts.base);
  const image = makeFile(join(dir.path, `${type}.img`), sizeMiB * (1 << 20));
  const device = attachLoop(image, { directIo: opts.loopDirectIo });
  const mountpoint = join(dir.path, 'mnt');
  try {
    run(type === 'ext4' ? 'mkfs.ext4' : 'mkfs.xfs', type === 'ext4' ? ['-q', '-F', device.device] : ['-q', '-f', device.device]);
    run('mkdir', ['-p', mountpoint]);
    run('mount', [...(opts.mountOptions ? ['-o', opts.mountOptions] : []), device.device, mountpoint]);
  } catch (err) {
    device.detach();
    dir.cleanup();
    throw err;
  }
  return {
    device,
    mountpoint,
    cleanup() {
      try {
        run('umount', [mountpoint]);
      } catch {
        /* not mounted */
      }
      device.detach();
      dir.cleanup();
    },
  };
}
