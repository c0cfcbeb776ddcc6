// `spindle vm set-disk --limits`: QEMU-style limits set, shown by `vm show`, removed with none; a
// set QEMU would refuse is refused with a sentence (exit 2) and changes nothing.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmInfo } from '../../electron/shared/api.js';
import { isolatedEnv, runVmCli } from '../lib/api.js';

let dir: string;
let env: NodeJS.ProcessEnv;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'spindle-cli-limits-'));
  env = isolatedEnv(dir);
  writeFileSync(join(dir, 'a.img'), '');
  truncateSync(join(dir, 'a.img'), 16 << 20);
});
after(() => rmSync(dir, { recursive: true, force: true }));

const spindle = (...args: string[]) => runVmCli(dir, env, args);
const limitsOf = () => VmInfo.parse(JSON.parse(spindle('show', 'lim', '--json').stdout)).config.disks[0]!.limits;

test('set-disk --limits sets, shows and removes limits; a wrong set is refused and changes nothing', () => {
  assert.equal(spindle('create', 'lim', '--disk', 'a.img', '--no-display').code, 0);
  const set = spindle('set-disk', 'lim', 'd0', '--limits', 'iops-write=500,bps-read=10M,bps-read-max=40M,bps-read-max-length=5');
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /d0: .* limits: iops-write=500, bps-read=10 MiB\/s \(burst 40 MiB\/s for 5 s\)/);
  assert.deepEqual(limitsOf(), { iopsWrite: 500, bpsRead: 10 << 20, bpsReadMax: 40 << 20, bpsReadMaxLength: 5 });

  const bad = spindle('set-disk', 'lim', 'd0', '--limits', 'iops-total=100,iops-read=50');
  assert.equal(bad.code, 2, bad.stderr);
  assert.equal(bad.stdout, '');
  assert.match(bad.stderr, /iops-total cannot be combined with iops-read or iops-write/);
  assert.equal(limitsOf()!.iopsWrite, 500, 'the refused set changed nothing');

  const none = spindle('set-disk', 'lim', 'd0', '--limits', 'none');
  assert.equal(none.code, 0, none.stderr);
  assert.doesNotMatch(none.stdout, /limits:/);
  assert.deepEqual(limitsOf(), {});
});
