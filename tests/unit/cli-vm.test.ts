// `spindle vm` as a user runs it: the real bin/spindle.js in a child process, with the config,
// runtime and data directories pointed at a temp dir. Exit codes: 0 ok, 2 bad input
// (INVALID_ARGUMENT, unknown option), 1 anything else refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, truncateSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmInfo } from '../../electron/api/contract.js';
import { z } from 'zod';
import { isolatedEnv, runVmCli } from '../lib/api.js';

let dir: string;
let env: NodeJS.ProcessEnv;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'spindle-cli-vm-'));
  env = isolatedEnv(dir);
  for (const f of ['vmlinuz', 'initrd.img']) writeFileSync(join(dir, f), 'not really a kernel');
  writeFileSync(join(dir, 'a.img'), '');
  truncateSync(join(dir, 'a.img'), 16 << 20);
});
after(() => rmSync(dir, { recursive: true, force: true }));

const spindle = (...args: string[]) => runVmCli(dir, env, args);

/** A refused command: its exit code, nothing on stdout, and its sentence on stderr. */
function refused(r: ReturnType<typeof spindle>, code: number, sentence: RegExp): void {
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  assert.equal(r.stdout, '');
  assert.match(r.stderr.split('\n')[0]!, /^spindle vm: /);
  assert.match(r.stderr, sentence);
}

test('vm create --json, then list and show, with relative paths resolved against the working directory', () => {
  const created = spindle('create', 'demo', '--memory', '256', '--cpus', '2', '--kernel', 'vmlinuz', '--initrd', 'initrd.img', '--append', 'console=ttyS0', '--disk', 'a.img', '--no-display', '--json');
  assert.equal(created.code, 0, created.stderr);
  const vm = VmInfo.parse(JSON.parse(created.stdout));
  assert.equal(vm.config.id, 'demo');
  assert.equal(vm.state, 'stopped');
  assert.deepEqual({ cpus: vm.config.cpus, mem: vm.config.memoryMiB, display: vm.config.display, net: vm.config.network.user }, { cpus: 2, mem: 256, display: 'none', net: true });
  assert.deepEqual(vm.config.boot, { kind: 'kernel', kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.img'), cmdline: 'console=ttyS0' });
  assert.deepEqual(vm.config.disks.map((d) => [d.id, d.path, d.kind, d.aio, d.cache]), [['d0', join(dir, 'a.img'), 'file', 'threads', 'writeback']]);
  // What the CLI printed is what it stored.
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'cfg', 'spindle', 'vms', 'demo.json'), 'utf8')), vm.config);

  const list = spindle('list', '--json');
  assert.equal(list.code, 0, list.stderr);
  const parsed = z.object({ vms: z.array(VmInfo), problems: z.array(z.unknown()) }).parse(JSON.parse(list.stdout));
  assert.deepEqual(parsed.vms.map((v) => v.config.id), ['demo']);
  assert.deepEqual(parsed.problems, []);

  const show = spindle('show', 'demo', '--json');
  assert.equal(show.code, 0, show.stderr);
  assert.deepEqual(VmInfo.parse(JSON.parse(show.stdout)).config, vm.config);
  const text = spindle('show', 'demo');
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^demo \(demo\): stopped/);
  assert.match(text.stdout, /d0: .*a\.img \(file\) aio=threads cache=writeback/);
});

test('set-disk: native with writeback is refused with the reason (exit 1) and nothing changes; native + none is accepted', () => {
  const r = spindle('set-disk', 'demo', 'd0', '--aio', 'native');
  refused(r, 1, /aio 'native' needs cache 'none' or 'directsync': Linux AIO is only asynchronous with O_DIRECT/);
  assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  const still = VmInfo.parse(JSON.parse(spindle('show', 'demo', '--json').stdout));
  assert.equal(still.config.disks[0]!.aio, 'threads');
  const ok = spindle('set-disk', 'demo', 'd0', '--aio', 'native', '--cache', 'none', '--json');
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(VmInfo.parse(JSON.parse(ok.stdout)).config.disks.map((d) => [d.aio, d.cache]), [['native', 'none']]);
  refused(spindle('set-disk', 'demo', 'd0', '--aio', 'turbo'), 2, /patch\.aio/);
  refused(spindle('set-disk', 'demo', 'd7', '--cache', 'none'), 1, /has no disk d7/);
});

test('bad input: unknown subcommand, missing name, bad --memory, unknown option, unknown VM', () => {
  refused(spindle('frobnicate'), 2, /Unknown vm subcommand 'frobnicate'/);
  refused(spindle(), 2, /Unknown vm subcommand ''/);
  refused(spindle('create'), 2, /Give the new VM a name: spindle vm create NAME/);
  refused(spindle('show'), 2, /Name the VM/);
  refused(spindle('create', 'x', '--memory', 'lots'), 2, /--memory takes a whole number, not 'lots'/);
  refused(spindle('create', 'x', '--memory', '8'), 2, /memoryMiB/);
  refused(spindle('create', 'x', '--cpus', '1.5'), 2, /--cpus takes a whole number/);
  refused(spindle('create', 'x', '--bogus'), 2, /Unknown option '--bogus'/);
  refused(spindle('create', 'x', '--disk', 'missing.img'), 1, /missing\.img does not exist/);
  refused(spindle('create', 'x', '--disk', '/dev/null'), 1, /character device/);
  refused(spindle('show', 'ghost'), 1, /There is no VM 'ghost'/);
  refused(spindle('kill', 'demo'), 1, /is not running/);
  // None of the refused creates left a VM file behind.
  assert.deepEqual(readdirSync(join(dir, 'cfg', 'spindle', 'vms')).filter((f) => f.endsWith('.json')), ['demo.json']);
  assert.equal(existsSync(join(dir, 'cfg', 'spindle', 'vms', 'x.json')), false);
});

test('vm --help prints the usage and exits 0', () => {
  const r = spindle('--help');
  assert.equal(r.code, 0);
  assert.match(r.stdout, /spindle vm list\|create\|show\|start\|stop\|kill\|attach\|detach\|set-disk\|stats/);
});
