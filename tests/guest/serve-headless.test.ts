// `spindle serve --headless` started with the README's systemd unit's ExecStart line, as systemd
// would run it (paths mapped to this checkout and this Node): it hosts without a UI, starts the VM
// marked "start when Spindle starts" (a real guest boots and answers on its console), answers the
// `vm` commands on the local socket, and on SIGTERM shuts the VM down and exits 0.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { VmInfo } from '../../electron/shared/api.js';
import { connectLocalApi } from '../../electron/api/local-socket.js';
import { isolatedEnv, runVmCli } from '../lib/api.js';
import { AGENT_READY } from '../lib/guest-image.js';
import { guestBoot } from './vm-guest.js';

const dir = mkdtempSync(join(tmpdir(), 'spindle-headless-'));
const env = isolatedEnv(dir);
let child: ReturnType<typeof spawn> | null = null;
after(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** The unit's ExecStart argv from README.md, with its example paths mapped to this machine. */
function execStart(): string[] {
  const readme = readFileSync(resolve('README.md'), 'utf8');
  const unit = /<!-- systemd-unit -->\s*```ini\n([\s\S]*?)```/.exec(readme);
  assert.ok(unit, 'README.md holds the systemd unit after <!-- systemd-unit -->');
  const line = /^\s*ExecStart=(.*)$/m.exec(unit[1]!)?.[1];
  assert.ok(line, 'the unit has an ExecStart line');
  const argv = line.trim().split(/\s+/);
  assert.equal(argv[0], '/usr/bin/node', 'the README example runs Node');
  assert.equal(argv[1], '/opt/spindle/bin/spindle.js', "the README example's checkout");
  return [process.execPath, resolve('bin/spindle.js'), ...argv.slice(2)];
}

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test("the systemd unit's ExecStart runs serve --headless, which starts the autostart VM and stops it on SIGTERM", async () => {
  const boot = await guestBoot();
  const cli = (args: string[]) => runVmCli(dir, env, args);
  const created = cli([
    'create',
    'auto',
    '--memory',
    '256',
    '--kernel',
    boot.kernel,
    '--initrd',
    boot.initrd,
    '--append',
    boot.cmdline,
    '--no-display',
    '--no-net',
  ]);
  assert.equal(created.code, 0, created.stderr);
  assert.equal(cli(['create', 'manual', '--memory', '64', '--kernel', boot.kernel, '--no-display']).code, 0);
  const on = cli(['autostart', 'auto', 'on']);
  assert.equal(on.code, 0, on.stderr);
  assert.equal(on.stdout.trim(), "'auto' starts when Spindle starts.");

  const [bin, ...args] = execStart();
  assert.deepEqual(args.slice(1), ['serve', '--headless']);
  child = spawn(bin!, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
  await until('serve --headless to say it hosts', 60_000, () => (/^hosting \S+api\.sock \(headless/m.test(out) ? true : undefined));

  const running = await until('the autostart VM to run', 120_000, () => {
    const r = cli(['show', 'auto', '--json']);
    const vm = r.code === 0 ? VmInfo.parse(JSON.parse(r.stdout)) : undefined;
    return vm?.state === 'running' ? vm : undefined;
  });
  const ppid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${running.pid}/status`, 'utf8'))![1]);
  assert.equal(ppid, child.pid, 'QEMU is a child of serve --headless');
  await until('serve to report the autostart', 30_000, () => (/started 'auto' \(start when Spindle starts\)/.test(out) ? true : undefined));
  assert.match(cli(['list']).stdout, /^manual\s+stopped\s+manual$/m, 'the VM not marked stays stopped');

  // The real guest booted: its agent answers on the console (through the local socket).
  await until('the guest agent on the serial console', 300_000, async () => {
    const api = await connectLocalApi(join(env.XDG_RUNTIME_DIR!, 'spindle', 'api.sock'));
    assert.ok(api, 'serve --headless answers on the local API socket');
    try {
      const { dataBase64 } = (await api.call('console.serialBacklog', { id: 'auto' })) as { dataBase64: string };
      return Buffer.from(dataBase64, 'base64').toString('latin1').includes(AGENT_READY) ? true : undefined;
    } finally {
      api.close();
    }
  });

  child.kill('SIGTERM');
  const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 120_000))]);
  assert.equal(code, 0, `serve --headless exits 0 on SIGTERM:\n${out}`);
  assert.throws(() => process.kill(running.pid!, 0), 'QEMU is gone');
  assert.match(cli(['show', 'auto']).stdout, /^auto \(auto\): stopped/);
});
