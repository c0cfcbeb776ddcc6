// Small JSON records kept per disk path in the data directory (the advisor's last probe, the aio
// comparison's completed runs), so what a user measured survives a reload and a restart. One file
// per path, named by a hash of it; the directory is private (0700), the files 0600, each write
// atomic (a temporary file renamed over the old one).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errnoOf } from '../shared/errors.js';

export class PathRecords<T> {
  constructor(readonly dir: string) {}

  private file(path: string): string {
    return join(this.dir, `${createHash('sha256').update(path).digest('hex').slice(0, 24)}.json`);
  }

  /** The record for `path`, or null when there is none (or it cannot be read: it is only a cache of measurements). */
  load(path: string): T | null {
    try {
      const rec = JSON.parse(readFileSync(this.file(path), 'utf8')) as { path: string; value: T };
      return rec.path === path ? rec.value : null;
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT' && !(err instanceof SyntaxError)) throw err;
      return null;
    }
  }

  save(path: string, value: T): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = this.file(path);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ path, value }), { mode: 0o600 });
    renameSync(tmp, file);
  }
}
