// Keeps the start of a disk the comparison is about to overwrite (a VM's disk, a path the user
// chose): copied to a file in Spindle's data directory before the first run, written back after
// the last one (also after a cancel or a failure). If writing back fails, the copy stays and the
// error names it, so nothing is lost silently.
import { mkdir, open, rm } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { SpindleError, errnoOf } from '../../shared/errors.js';

const CHUNK = 1 << 20;

export class RegionBackup {
  private constructor(
    readonly diskPath: string,
    readonly backupPath: string,
    readonly bytes: number,
  ) {}

  /** Copies up to `bytes` from the start of `diskPath` (less if the disk is smaller) into `dir`. */
  static async save(diskPath: string, bytes: number, dir: string): Promise<RegionBackup> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const backupPath = join(dir, `bench-backup-${randomUUID()}.img`);
    const src = await open(diskPath, 'r');
    let copied = 0;
    try {
      const dst = await open(backupPath, 'wx', 0o600);
      try {
        const buf = Buffer.allocUnsafe(CHUNK);
        while (copied < bytes) {
          const { bytesRead } = await src.read(buf, 0, Math.min(CHUNK, bytes - copied), copied);
          if (bytesRead === 0) break;
          await dst.write(buf, 0, bytesRead, copied);
          copied += bytesRead;
        }
        await dst.sync();
      } finally {
        await dst.close();
      }
    } catch (err) {
      await rm(backupPath, { force: true });
      throw new SpindleError(
        errnoOf(err) === 'ENOSPC' ? 'NO_SPACE' : 'IO_ERROR',
        `Spindle could not save the start of ${diskPath} before the comparison (${(err as Error).message}); nothing was written to it.`,
        errnoOf(err),
      );
    } finally {
      await src.close();
    }
    return new RegionBackup(diskPath, backupPath, copied);
  }

  /** Writes the saved bytes back and removes the copy. */
  async restore(): Promise<void> {
    try {
      const src = await open(this.backupPath, 'r');
      const dst = await open(this.diskPath, 'r+');
      try {
        const buf = Buffer.allocUnsafe(CHUNK);
        for (let at = 0; at < this.bytes;) {
          const { bytesRead } = await src.read(buf, 0, Math.min(CHUNK, this.bytes - at), at);
          if (bytesRead === 0) throw new Error('the saved copy is shorter than expected');
          await dst.write(buf, 0, bytesRead, at);
          at += bytesRead;
        }
        await dst.sync();
      } finally {
        await src.close();
        await dst.close();
      }
    } catch (err) {
      throw new SpindleError(
        'IO_ERROR',
        `Spindle could not write back the first ${this.bytes} bytes of ${this.diskPath} after the comparison (${(err as Error).message}); they are saved in ${this.backupPath}.`,
        errnoOf(err),
      );
    }
    await rm(this.backupPath, { force: true });
  }
}
