// The lock files behind "one host process" and "one process per VM" (electron/host/vm/lock-file.ts,
// native/posix/ofd_lock.cc): real OFD locks between real processes.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tryLock, lockOwner, describeOwner } from '../../electron/host/vm/lock-file.js';
import { holdLock } from '../lib/lock-holder.js';

const dir = mkdtempSync(join(tmpdir(), 'spindle-lockfile-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('in one process: taken once, its pid and role readable without taking it, free again on release', () => {
  const path = join(dir, 'a.lock');
  assert.equal(lockOwner(path), null, 'no file: nobody holds it');
  const held = tryLock(path, 'spindle serve');
  assert.ok(held, 'the first take succeeds');
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(lockOwner(path), { pid: process.pid, role: 'spindle serve' });
  assert.equal(describeOwner(lockOwner(path)!), `spindle serve, pid ${process.pid}`);
  // Another open of the same file, even in this process, is another holder.
  assert.equal(tryLock(path), null);
  held.release();
  held.release(); // idempotent
  assert.equal(lockOwner(path), null);
  assert.equal(readFileSync(path, 'utf8'), '', 'the released file names no process');
  const again = tryLock(path);
  assert.ok(again, 'free again after release');
  again.release();
});

test('between processes: the holder is named; a SIGKILLed holder leaves no stale lock', async () => {
  const path = join(dir, 'b.lock');
  const holder = await holdLock(path, 'the Spindle app');
  try {
    assert.equal(tryLock(path), null, 'refused while the other process holds it');
    assert.deepEqual(lockOwner(path), { pid: holder.pid, role: 'the Spindle app' });
    // Asking who holds it never takes it: the holder keeps it through many probes.
    for (let i = 0; i < 200; i++) assert.equal(lockOwner(path)?.pid, holder.pid);
  } finally {
    await holder.kill();
  }
  assert.equal(lockOwner(path), null, 'the kernel dropped the lock with the process');
  const mine = tryLock(path);
  assert.ok(mine, 'taken over at once, without cleaning anything up');
  mine.release();
});

test('a child process started while the lock is held does not inherit it (QEMU outlives nothing)', async () => {
  const path = join(dir, 'c.lock');
  const held = tryLock(path)!;
  assert.ok(held);
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    await new Promise((r) => child.once('spawn', r));
    held.release();
    assert.equal(lockOwner(path), null, 'released although the child still runs');
  } finally {
    child.kill('SIGKILL');
  }
});
