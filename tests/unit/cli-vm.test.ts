// `spindle vm` as a user runs it: the real bin/spindle.js in a child process, with the config,
// runtime and data directories pointed at a temp dir. Exit codes: 0 ok, 2 bad input
// (INVALID_ARGUMENT, unknown option), 1 anything else refused.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, truncateSync, readFileSync, readdirSync, existsSync, mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { VmInfo } from '../../electron/shared/api.js';
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
  const created = spindle(
    'create',
    'demo',
    '--memory',
    '256',
    '--cpus',
    '2',
    '--kernel',
    'vmlinuz',
    '--initrd',
    'initrd.img',
    '--append',
    'console=ttyS0',
    '--disk',
    'a.img',
    '--no-display',
    '--json',
  );
  assert.equal(created.code, 0, created.stderr);
  const vm = VmInfo.parse(JSON.parse(created.stdout));
  assert.equal(vm.config.id, 'demo');
  assert.equal(vm.state, 'stopped');
  assert.deepEqual(
    { cpus: vm.config.cpus, mem: vm.config.memoryMiB, display: vm.config.display, net: vm.config.network.user },
    { cpus: 2, mem: 256, display: 'none', net: true },
  );
  assert.deepEqual(vm.config.boot, {
    kind: 'kernel',
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    cmdline: 'console=ttyS0',
  });
  assert.deepEqual(
    vm.config.disks.map((d) => [d.id, d.path, d.kind, d.aio, d.cache]),
    [['d0', join(dir, 'a.img'), 'file', 'threads', 'writeback']],
  );
  // What the CLI printed is what it stored.
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'cfg', 'spindle', 'vms', 'demo.json'), 'utf8')), vm.config);

  const list = spindle('list', '--json');
  assert.equal(list.code, 0, list.stderr);
  const parsed = z.object({ vms: z.array(VmInfo), problems: z.array(z.unknown()) }).parse(JSON.parse(list.stdout));
  assert.deepEqual(
    parsed.vms.map((v) => v.config.id),
    ['demo'],
  );
  assert.deepEqual(parsed.problems, []);

  const show = spindle('show', 'demo', '--json');
  assert.equal(show.code, 0, show.stderr);
  assert.deepEqual(VmInfo.parse(JSON.parse(show.stdout)).config, vm.config);
  const text = spindle('show', 'demo');
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^demo \(demo\): stopped/);
  assert.match(text.stdout, /d0: .*a\.img \(file, raw\) aio=threads cache=writeback/);
});

test('set-disk: native with writeback is refused with the reason (exit 1) and nothing changes; native + none is accepted', () => {
  const r = spindle('set-disk', 'demo', 'd0', '--aio', 'native');
  refused(r, 1, /aio 'native' needs cache 'none' or 'directsync': Linux AIO is only asynchronous with O_DIRECT/);
  assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  const still = VmInfo.parse(JSON.parse(spindle('show', 'demo', '--json').stdout));
  assert.equal(still.config.disks[0]!.aio, 'threads');
  const ok = spindle('set-disk', 'demo', 'd0', '--aio', 'native', '--cache', 'none', '--json');
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(
    VmInfo.parse(JSON.parse(ok.stdout)).config.disks.map((d) => [d.aio, d.cache]),
    [['native', 'none']],
  );
  refused(spindle('set-disk', 'demo', 'd0', '--aio', 'turbo'), 2, /patch\.aio/);
  refused(spindle('set-disk', 'demo', 'd7', '--cache', 'none'), 1, /has no disk d7/);
});

test('bad input: unknown subcommand, missing name, bad --memory, unknown option, unknown VM', () => {
  refused(spindle('frobnicate'), 2, /Unknown vm subcommand 'frobnicate'/);
  refused(spindle(), 2, /Unknown vm subcommand ''/);
  refused(spindle('create'), 2, /Give the new VM a name: spindle vm create NAME/);
  refused(spindle('show'), 2, /Name the VM/);
  refused(spindle('create', 'x', '--memory', 'lots'), 2, /--memory takes a whole number of MiB from 32 to 1048576, not 'lots'/);
  refused(spindle('create', 'x', '--memory', '8'), 2, /--memory takes a whole number of MiB from 32 to 1048576, not '8'/);
  refused(spindle('create', 'x', '--cpus', '1.5'), 2, /--cpus takes a whole number from 1 to 64, not '1.5'/);
  refused(spindle('create', 'x', '--bogus'), 2, /Unknown option '--bogus'/);
  refused(spindle('create', 'x', '--disk', 'missing.img'), 1, /missing\.img does not exist/);
  refused(spindle('create', 'x', '--disk', '/dev/null'), 1, /character device/);
  refused(spindle('show', 'ghost'), 1, /There is no VM 'ghost'/);
  refused(spindle('kill', 'demo'), 1, /is not running/);
  // None of the refused creates left a VM file behind.
  assert.deepEqual(
    readdirSync(join(dir, 'cfg', 'spindle', 'vms')).filter((f) => f.endsWith('.json')),
    ['demo.json'],
  );
  assert.equal(existsSync(join(dir, 'cfg', 'spindle', 'vms', 'x.json')), false);
});

/** Refused with exactly one line on stderr (no usage dump, no node parser text). */
function oneLine(r: ReturnType<typeof spindle>, code: number, sentence: RegExp): void {
  refused(r, code, sentence);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line, got:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /ambiguous|Did you forget|usage:/i);
}

test('negative numbers in options: one line naming the option and the value, exit code 2', () => {
  oneLine(spindle('create', 'neg', '--memory', '-5'), 2, /--memory takes a whole number of MiB from 32 to 1048576, not '-5'\./);
  oneLine(spindle('create', 'neg', '--cpus', '-2'), 2, /--cpus takes a whole number from 1 to 64, not '-2'\./);
  oneLine(spindle('set-disk', 'demo', 'd0', '--queues', '-1'), 2, /--queues takes a whole number from 1 to 16, not '-1'\./);
  oneLine(spindle('attach', 'demo', 'a.img', '--queues', '-1'), 2, /--queues takes a whole number from 1 to 16, not '-1'\./);
  oneLine(spindle('stop', 'demo', '--timeout', '-3'), 2, /--timeout takes a whole number of seconds from 0 to 600, not '-3'\./);
  // A value that looks like another option, a missing value, an unknown option: one line each.
  oneLine(spindle('create', 'neg', '--kernel', '--iso'), 2, /--kernel needs a value, and '--iso' looks like an option/);
  oneLine(spindle('create', 'neg', '--memory'), 2, /--memory needs a value\. See: spindle vm --help\./);
  oneLine(spindle('create', 'neg', '--bogus'), 2, /Unknown option '--bogus'\. See: spindle vm --help\./);
  // The other commands parse through the same path (cli.ts).
  for (const [args, re] of [
    [
      ['export', 'a.img', '--socket', 'x.sock', '--queues', '-1'],
      /spindle export: --queues must be a whole number from 1 to 256, not '-1'\./,
    ],
    [['loadgen', '--socket', 'x.sock', '--iodepth', '-4'], /spindle loadgen: --iodepth must be a whole number from 1 to 256, not '-4'\./],
    [['serve', '--port', '-1'], /spindle serve: --port must be a whole number from 0 \(any free port\) to 65535, not '-1'\./],
    [['create-image', 'n.img', '--size', '-1G'], /^spindle create-image: .*'-1G'/],
  ] as const) {
    const r = spawnSync(process.execPath, [resolve('bin/spindle.js'), ...args], { cwd: dir, env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 2, `${args.join(' ')}: exit code (stderr: ${r.stderr})`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, `${args.join(' ')}: one line, got:\n${r.stderr}`);
  }
  assert.equal(existsSync(join(dir, 'cfg', 'spindle', 'vms', 'neg.json')), false);
});

test('vm create refuses an ISO that is a directory, --kernel with --iso, boot options without --kernel, and a name in use', () => {
  mkdirSync(join(dir, 'iso-dir'), { recursive: true });
  writeFileSync(join(dir, 'boot.iso'), 'not really an ISO');
  refused(spindle('create', 'iso', '--iso', 'iso-dir'), 1, /The ISO image .*iso-dir is a directory; give the ISO image file itself\./);
  refused(
    spindle('create', 'iso', '--kernel', 'vmlinuz', '--iso', 'boot.iso'),
    2,
    /--kernel and --iso are two ways to boot; give one of them\./,
  );
  refused(spindle('create', 'iso', '--iso', 'boot.iso', '--initrd', 'initrd.img'), 2, /--initrd goes with --kernel/);
  refused(spindle('create', 'iso', '--append', 'console=ttyS0'), 2, /--append goes with --kernel/);
  // 'demo' exists (first test): the same name in any letter case is refused, and nothing is written.
  refused(
    spindle('create', 'DEMO', '--no-display'),
    1,
    /There is already a VM named 'demo' \(names are compared ignoring letter case\); choose another name\./,
  );
  assert.deepEqual(
    readdirSync(join(dir, 'cfg', 'spindle', 'vms')).filter((f) => f.endsWith('.json')),
    ['demo.json'],
  );
  const ok = spindle('create', 'iso', '--iso', 'boot.iso', '--json');
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(VmInfo.parse(JSON.parse(ok.stdout)).config.boot, { kind: 'iso', path: join(dir, 'boot.iso') });
  // A name is found ignoring case too.
  assert.equal(spindle('show', 'ISO').code, 0);
});

test('vm --help prints the usage and exits 0', () => {
  const r = spindle('--help');
  assert.equal(r.code, 0);
  assert.match(r.stdout, /spindle vm list\|create\|update\|show\|start\|stop\|kill\|media\|attach\|detach\|set-disk\|resize\|stats/);
});
