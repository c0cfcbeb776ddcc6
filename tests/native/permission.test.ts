// A file that is read-only for the user is said to be read-only, not "add your user
// to group 'nogroup'": openDisk, `spindle export` and `spindle vm create`, run as user nobody.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isolatedEnv } from '../lib/api.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { killOnExit, stopChild } from '../lib/proc.js';

const NOBODY = 65534;  // user nobody, group nogroup on Debian
const bin = fileURLToPath(new URL('../../../bin/spindle.js', import.meta.url));
const openJs = fileURLToPath(new URL('../../electron/dataplane/block/open.js', import.meta.url));

/** openDisk(path) as user nobody: the error it throws, as JSON, or 'opened'. */
function openAsNobody(path: string, readOnly: boolean): { code: string; message: string } | 'opened' {
  const script = `import(${JSON.stringify(openJs)}).then((m) => { try { m.openDisk(${JSON.stringify(path)}, { cache: 'writeback', readOnly: ${readOnly} }).close(); console.log('"opened"'); } catch (e) { console.log(JSON.stringify(e.toJSON ? e.toJSON() : String(e))); } })`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: NOBODY, gid: NOBODY, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim());
}

function sharedDir() {
  const dir = tempDir('spindle-perm-');
  chmodSync(dir.path, 0o777);
  return dir;
}

function fileOf(dir: string, name: string, uid: number, gid: number, mode: number): string {
  const path = makeFile(join(dir, name), 1 << 20);
  chownSync(path, uid, gid);
  chmodSync(path, mode);
  return path;
}

test('a read-only file is said to be read-only, whoever owns it, and opens read-only', (t) => {
  const dir = sharedDir();
  t.after(() => dir.cleanup());
  const cases = [
    { name: 'own.img', uid: NOBODY, gid: NOBODY, mode: 0o444, re: /own\.img is read-only \(mode 0444, owner nobody, group nogroup\): open it read-only, or make it writable \(chmod u\+w / },
    { name: 'root.img', uid: 0, gid: 0, mode: 0o444, re: /root\.img is read-only \(mode 0444, owner root, group root\): open it read-only, or ask root to let you write it/ },
    // nobody is in group nogroup already: joining it would change nothing.
    { name: 'group.img', uid: 0, gid: NOBODY, mode: 0o644, re: /group\.img is read-only for you \(mode 0644, owner root, group nogroup\): open it read-only, or ask root/ },
  ];
  for (const c of cases) {
    const path = fileOf(dir.path, c.name, c.uid, c.gid, c.mode);
    const rw = openAsNobody(path, false);
    assert.notEqual(rw, 'opened', c.name);
    if (rw === 'opened') continue;
    assert.equal(rw.code, 'READ_ONLY', `${c.name}: ${rw.message}`);
    assert.match(rw.message, c.re);
    assert.doesNotMatch(rw.message, /add your user/, c.name);
    assert.equal(openAsNobody(path, true), 'opened', `${c.name} opens read-only`);
  }
  // Where a group would grant write access, it is named.
  const disk = fileOf(dir.path, 'disk-group.img', 0, 6, 0o664);  // group 'disk' on Debian
  const g = openAsNobody(disk, false);
  assert.notEqual(g, 'opened');
  if (g !== 'opened') assert.match(g.message, /read-only for you .*members of group 'disk' may write it/);
});

test('spindle export and vm create as nobody say the file is read-only; export --read-only serves it', async (t) => {
  const dir = sharedDir();
  t.after(() => dir.cleanup());
  const img = fileOf(dir.path, 'ro.img', 0, NOBODY, 0o444);
  const ex = spawnSync(process.execPath, [bin, 'export', img, '--socket', join(dir.path, 'a.sock')], { uid: NOBODY, gid: NOBODY, encoding: 'utf8', timeout: 60_000 });
  assert.equal(ex.status, 1, ex.stderr);
  assert.match(ex.stderr, /ro\.img is read-only \(mode 0444, owner root, group nogroup\): open it read-only/);
  assert.doesNotMatch(ex.stderr, /nogroup'/);

  const home = join(dir.path, 'home');
  mkdirSync(home, { mode: 0o777 });
  chmodSync(home, 0o777);
  const vm = spawnSync(process.execPath, [bin, 'vm', 'create', 'ro-vm', '--disk', img], { uid: NOBODY, gid: NOBODY, env: isolatedEnv(home, { HOME: home }), encoding: 'utf8', timeout: 60_000 });
  assert.equal(vm.status, 1, vm.stderr);
  assert.match(vm.stderr, /ro\.img is read-only \(mode 0444, owner root, group nogroup\): open it read-only/);

  const served = spawn(process.execPath, [bin, 'export', img, '--socket', join(dir.path, 'b.sock'), '--read-only'], { uid: NOBODY, gid: NOBODY, stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(served);
  let out = '';
  let err = '';
  served.stdout.on('data', (d) => (out += d));
  served.stderr.on('data', (d) => (err += d));
  const deadline = Date.now() + 60_000;
  while (!/^ready /m.test(out)) {
    assert.equal(served.exitCode, null, `the read-only export exited: ${err}`);
    assert.ok(Date.now() < deadline, `the read-only export did not get ready within 60 s: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(await stopChild(served), 0);
});
