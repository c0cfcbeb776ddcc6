// Helpers for the qcow2 tests: QEMU's tools as the judge (qemu-img create/check/compare/info),
// a seeded random source whose seed the test prints, and a raw twin written with the same data.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';

export function qemuImg(...args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** `qemu-img check`: exit code (0 clean, 3 leaks only, 2 corruption, 1 error) and its output. */
export function qemuCheck(path: string): { code: number | null; out: string } {
  const r = spawnSync('qemu-img', ['check', path], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout + r.stderr };
}

/** `qemu-img compare` of a qcow2 image with a raw file: null when identical, else what it said. */
export function qemuCompare(image: string, raw: string, imageFormat = 'qcow2'): string | null {
  const r = spawnSync('qemu-img', ['compare', '-f', imageFormat, '-F', 'raw', image, raw], { encoding: 'utf8' });
  return r.status === 0 ? null : r.stdout + r.stderr;
}

/** mulberry32: small, seeded, good enough to pick offsets and lengths. */
export function seeded(seed: number): { next(n: number): number; bytes(n: number): Buffer } {
  let a = seed >>> 0;
  const u32 = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  return {
    next: (n) => u32() % n,
    bytes: (n) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i += 4) b.writeUInt32LE(u32(), i);
      return b;
    },
  };
}

/** A raw file of `size` bytes that mirrors what a test writes to an image. */
export class RawTwin {
  private readonly fd: number;
  constructor(
    readonly path: string,
    size: number,
  ) {
    this.fd = openSync(path, 'w+');
    ftruncateSync(this.fd, size);
  }
  write(offset: number, data: Uint8Array): void {
    writeSync(this.fd, data, 0, data.length, offset);
  }
  zero(offset: number, length: number): void {
    this.write(offset, Buffer.alloc(length));
  }
  close(): void {
    closeSync(this.fd);
  }
}
