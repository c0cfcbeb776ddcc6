// Runtime sockets live in a 0700 directory under $XDG_RUNTIME_DIR that is ours;
// anything else in its place is refused, and sockets themselves are 0600.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runtimeDir, vmRuntimeDir } from '../../electron/host/vm/paths.js';
import { SpindleError } from '../../electron/shared/errors.js';

const mode = (p: string) => lstatSync(p).mode & 0o777;
const refused = (fn: () => unknown, re: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof SpindleError && e.code === 'PERMISSION_DENIED' && re.test(e.message));

function scratch(): string {
  return mkdtempSync(join(tmpdir(), 'spindle-rt-'));
}

test('runtime and per-VM directories are created 0700 under $XDG_RUNTIME_DIR', () => {
  const dir = scratch();
  try {
    const env = { XDG_RUNTIME_DIR: join(dir, 'run') };
    const rt = runtimeDir(env);
    assert.equal(rt, join(dir, 'run', 'spindle'));
    assert.equal(mode(rt), 0o700);
    const vm = vmRuntimeDir('my-vm', env);
    assert.equal(vm, join(rt, 'my-vm'));
    assert.equal(mode(vm), 0o700);
    // A relative XDG_RUNTIME_DIR is not trusted (it would depend on the cwd): /tmp/spindle-UID instead.
    const fallback = runtimeDir({ XDG_RUNTIME_DIR: 'relative/run' });
    assert.equal(fallback, `/tmp/spindle-${process.getuid!()}`);
    assert.equal(mode(fallback), 0o700);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a runtime directory opened up to others is closed again (0700)', () => {
  const dir = scratch();
  try {
    const rt = join(dir, 'spindle');
    mkdirSync(rt, { mode: 0o777 });
    chmodSync(rt, 0o777);
    runtimeDir({ XDG_RUNTIME_DIR: dir });
    assert.equal(mode(rt), 0o700);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a symlink, a file, or a directory owned by someone else in its place is refused with a sentence', () => {
  const dir = scratch();
  try {
    const target = join(dir, 'elsewhere');
    mkdirSync(target);
    const a = join(dir, 'a');
    mkdirSync(a);
    symlinkSync(target, join(a, 'spindle'));
    refused(() => runtimeDir({ XDG_RUNTIME_DIR: a }), /not a directory owned by you/);

    const b = join(dir, 'b');
    mkdirSync(join(b, 'spindle'), { recursive: true });
    if (process.getuid!() === 0) {
      chownSync(join(b, 'spindle'), 65534, 65534); // nobody: another user planted it
      refused(() => runtimeDir({ XDG_RUNTIME_DIR: b }), /remove it or set XDG_RUNTIME_DIR/);
      // Also one level down (a VM's directory).
      const c = join(dir, 'c');
      mkdirSync(join(c, 'spindle', 'vm1'), { recursive: true, mode: 0o700 });
      chownSync(join(c, 'spindle', 'vm1'), 65534, 65534);
      refused(() => vmRuntimeDir('vm1', { XDG_RUNTIME_DIR: c }), /vm1 is not a directory owned by you/);
    }
    assert.equal(statSync(target).mode & 0o777, 0o755 & ~process.umask(), 'the symlink target was not touched');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a runtime path too long for unix sockets is refused with a sentence', () => {
  const dir = scratch();
  try {
    const deep = join(dir, 'x'.repeat(90));
    assert.throws(
      () => vmRuntimeDir('vm', { XDG_RUNTIME_DIR: deep }),
      (e: unknown) => e instanceof SpindleError && /too long for unix sockets/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
