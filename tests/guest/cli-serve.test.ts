// The CLI and `spindle serve` are one backend. A real `spindle serve` runs a real QEMU
// booting the test guest; every command comes from the real CLI in other processes: `vm list` sees
// it running, `vm set-disk` switches the live disk to io_uring (the disk server in serve really
// opens an io_uring; the guest's writes land), `vm start` refuses, a second serve refuses, a host
// with another runtime directory but the same VM files refuses to start the VM and leaves serve's
// sockets alone, and `vm stop` stops it in serve.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { VmInfo, type StatsTick } from '../../electron/shared/api.js';
import { connectLocalApi } from '../../electron/api/local-socket.js';
import { isolatedEnv, runVmCli, type CliResult } from '../lib/api.js';
import { makeFile } from '../lib/loop.js';
import { spawnServe, type ServeProcess } from '../lib/serve-process.js';
import { AGENT_END_PREFIX, AGENT_READY } from '../lib/guest-image.js';
import { guestBoot } from './vm-guest.js';
import { waitFor } from '../lib/wait.js';

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'spindle-cli-serve-'));
const env = isolatedEnv(dir);
const serves: ServeProcess[] = [];
after(async () => {
  await Promise.all(serves.map((s) => s.stop()));
  rmSync(dir, { recursive: true, force: true });
});

const cli = (args: string[], e: NodeJS.ProcessEnv = env): CliResult => runVmCli(dir, e, args);
function ok(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
  return r.stdout;
}
const show = (name = 'guest', e: NodeJS.ProcessEnv = env): VmInfo =>
  VmInfo.parse(JSON.parse(ok(cli(['show', name, '--json'], e), 'vm show')));

/** io_uring instances a process holds (each is an fd on anon_inode:[io_uring]). */
function ioUrings(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[io_uring]';
    } catch {
      return false;
    }
  }).length;
}

/** The guest's command agent reached through serve's local API socket (console.serialInput / serialBacklog). */
class SocketGuest {
  constructor(
    private readonly vmId: string,
    private readonly e: NodeJS.ProcessEnv = env,
  ) {}

  private async backlog(): Promise<string> {
    const api = await connectLocalApi(join(this.e.XDG_RUNTIME_DIR!, 'spindle', 'api.sock'));
    assert.ok(api, 'serve answers on the local API socket');
    try {
      const { dataBase64 } = (await api.call('console.serialBacklog', { id: this.vmId })) as { dataBase64: string };
      return Buffer.from(dataBase64, 'base64').toString('latin1');
    } finally {
      api.close();
    }
  }

  private async waitFor(re: RegExp, timeoutMs: number, what: string): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = await this.backlog();
      const m = text.match(re);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`${what}: not seen within ${timeoutMs} ms; serial ends:\n${text.slice(-1500)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  ready(): Promise<unknown> {
    return this.waitFor(new RegExp(AGENT_READY), 300_000, 'the guest agent');
  }

  /** Runs `cmd` in the guest; returns what it printed after `R=` on its last such line. */
  async result(cmd: string, timeoutMs = 180_000): Promise<string> {
    const token = randomBytes(6).toString('hex');
    const api = await connectLocalApi(join(this.e.XDG_RUNTIME_DIR!, 'spindle', 'api.sock'));
    assert.ok(api);
    try {
      const line = `${token} ${Buffer.from(`${cmd} | sed 's/^/R${token}=/'`).toString('base64')}\n`;
      await api.call('console.serialInput', { vmId: this.vmId, dataBase64: Buffer.from(line).toString('base64') });
    } finally {
      api.close();
    }
    const m = await this.waitFor(
      new RegExp(`R${token}=([^\\r\\n]*)[\\s\\S]*${AGENT_END_PREFIX}${token}_(\\d+)__`),
      timeoutMs,
      `guest command ${cmd}`,
    );
    return m[1]!.trim();
  }
}

function hostMd5(path: string, offsetMiB: number, lengthMiB: number): string {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(lengthMiB * MiB);
    assert.equal(readSync(fd, buf, 0, buf.length, offsetMiB * MiB), buf.length);
    return createHash('md5').update(buf).digest('hex');
  } finally {
    closeSync(fd);
  }
}

/** 4 MiB of fresh random data written by the guest with O_DIRECT at `offsetMiB`; its md5 as the guest reads it back. */
const guestWrite = (g: SocketGuest, offsetMiB: number) =>
  g.result(
    `dd if=/dev/urandom of=/tmp/p bs=1M count=4 2>/dev/null && dd if=/tmp/p of=/dev/vda bs=1M seek=${offsetMiB} oflag=direct conv=fsync 2>/dev/null && dd if=/dev/vda bs=1M skip=${offsetMiB} count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1`,
  );

test('spindle serve hosts the VM; list, set-disk (live), start, stop come from the CLI; no second host or second start', async () => {
  const boot = await guestBoot();
  const image = makeFile(join(dir, 'disk.img'), 64 * MiB);
  const serve = spawnServe(env);
  serves.push(serve);
  await serve.listening();

  // Created through serve (the CLI finds its socket), started by serve: `vm start` returns at once.
  ok(
    cli([
      'create',
      'guest',
      '--memory',
      '256',
      '--kernel',
      boot.kernel,
      '--initrd',
      boot.initrd,
      '--append',
      boot.cmdline,
      '--disk',
      image,
      '--no-display',
      '--no-net',
    ]),
    'vm create',
  );
  const started = VmInfo.parse(JSON.parse(ok(cli(['start', 'guest', '--json']), 'vm start')));
  assert.equal(started.state, 'running');
  assert.ok(started.pid, 'QEMU runs');
  const qemuPpid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${started.pid}/status`, 'utf8'))![1]);
  assert.equal(qemuPpid, serve.pid, 'QEMU is a child of serve, not of the CLI');
  assert.match(ok(cli(['list']), 'vm list'), /^guest\s+running\s+guest$/m);

  const guest = new SocketGuest(started.config.id);
  await guest.ready();
  assert.equal(await guest.result('cat /sys/block/vda/serial'), 'spindle-d0');
  const before = await guestWrite(guest, 8);
  assert.equal(hostMd5(image, 8, 4), before, 'the guest write reached the image (threads)');

  // ── vm set-disk from another process switches the live disk server in serve.
  const live0 = show();
  assert.deepEqual(live0.disks[0]!.modes, { aio: 'threads', cache: 'writeback', nowait: 'off' });
  const uringsBefore = ioUrings(serve.pid);
  const set = ok(cli(['set-disk', 'guest', 'd0', '--aio', 'io_uring']), 'vm set-disk');
  assert.match(set, /d0: .* aio=io_uring .*\[serving with aio=io_uring cache=writeback nowait=off\]/);
  const live1 = show();
  assert.equal(live1.state, 'running');
  assert.equal(live1.config.disks[0]!.aio, 'io_uring', 'saved');
  assert.deepEqual(live1.disks[0]!.modes, { aio: 'io_uring', cache: 'writeback', nowait: 'off' }, 'served with it now');
  assert.ok(ioUrings(serve.pid) > uringsBefore, `serve opened an io_uring for the disk (${uringsBefore} before)`);
  const after = await guestWrite(guest, 24);
  assert.equal(hostMd5(image, 24, 4), after, 'the guest write reached the image (io_uring)');
  assert.equal(hostMd5(image, 8, 4), before, 'the earlier write is intact');

  // ── vm stats: the live sample of this VM's disk while the guest writes, as JSON and as lines.
  const writer = await guest.result(
    '(while :; do dd if=/dev/urandom of=/dev/vda bs=64k seek=800 count=64 oflag=direct 2>/dev/null; done) > /dev/null 2>&1 & echo $!',
  );
  assert.match(writer, /^\d+$/, 'the background writer started');
  let stats: StatsTick | null = null;
  await waitFor(
    () => {
      stats = JSON.parse(ok(cli(['stats', 'guest', '--json']), 'vm stats')) as StatsTick | null;
      return stats?.disks.some((d) => d.diskId === 'd0' && d.writeMBps > 0);
    },
    { timeoutMs: 60_000, intervalMs: 500, what: 'vm stats to show d0 writing', detail: () => JSON.stringify(stats) },
  );
  assert.deepEqual(
    stats!.disks.map((d) => d.vmId),
    [started.config.id],
    'only this VM',
  );
  assert.equal(stats!.vms[0]!.vmId, started.config.id);
  const lines = ok(cli(['stats', 'guest']), 'vm stats');
  assert.match(lines, new RegExp(`^${started.config.id}: QEMU CPU [\\d.]+%$`, 'm'));
  assert.match(lines, new RegExp(`^${started.config.id}/d0: read [\\d.]+ MB/s \\d+ IOPS, write [\\d.]+ MB/s \\d+ IOPS, p50 \\d+ µs`, 'm'));
  assert.equal(await guest.result(`kill ${writer} && echo stopped`), 'stopped');

  // ── vm attach / detach through serve: the guest gets the disk live, uses it, and loses it.
  const extra = makeFile(join(dir, 'extra.img'), 16 * MiB);
  const attached = ok(cli(['attach', 'guest', extra, '--aio', 'io_uring', '--cache', 'none']), 'vm attach');
  assert.match(attached, /d1: .*extra\.img.* aio=io_uring cache=none/);
  assert.equal(show().disks.find((d) => d.id === 'd1')?.state, 'serving');
  const dev1 = await guest.result(
    'for i in $(seq 1 100); do for d in /sys/block/vd*; do [ "$(cat $d/serial)" = spindle-d1 ] && { echo ${d##*/}; exit 0; }; done; sleep 0.2; done',
  );
  assert.match(dev1, /^vd[b-z]$/, 'the guest sees the attached disk');
  const extraMd5 = await guest.result(
    `dd if=/dev/urandom of=/tmp/x bs=1M count=4 2>/dev/null && dd if=/tmp/x of=/dev/${dev1} bs=1M seek=2 oflag=direct conv=fsync 2>/dev/null && md5sum < /tmp/x | cut -d' ' -f1`,
  );
  assert.equal(hostMd5(extra, 2, 4), extraMd5, 'the guest wrote to the attached disk');
  const opened = (): boolean =>
    readdirSync(`/proc/${serve.pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${serve.pid}/fd/${fd}`) === extra;
      } catch {
        return false;
      }
    });
  assert.ok(opened(), 'serve serves the attached image');
  const detached = ok(cli(['detach', 'guest', 'd1']), 'vm detach');
  assert.doesNotMatch(detached, /extra\.img/);
  assert.deepEqual(
    show().config.disks.map((d) => d.id),
    ['d0'],
  );
  await waitFor(async () => (await guest.result(`[ -e /sys/block/${dev1} ] && echo present || echo gone`)) === 'gone', {
    timeoutMs: 60_000,
    intervalMs: 500,
    what: `the guest to lose /dev/${dev1} after vm detach`,
  });
  await waitFor(() => !opened(), { timeoutMs: 30_000, what: 'serve to close the detached image' });

  // ── --console needs the VM in the foreground: with serve hosting, it is refused with the reason.
  const consoleHere = cli(['start', 'guest', '--console']);
  assert.notEqual(consoleHere.code, 0);
  assert.match(consoleHere.stderr, /--console needs the VM in the foreground, but the app or spindle serve hosts the VMs/);

  // ── A VM is never started twice: not through serve, not by a second serve, not by another host.
  const again = cli(['start', 'guest']);
  assert.equal(again.code, 1, again.stderr);
  assert.match(again.stderr, /^spindle vm: VM 'guest' is already running\.\n$/);
  const runDir = join(env.XDG_RUNTIME_DIR!, 'spindle', started.config.id);
  const sockets = readdirSync(runDir).sort();
  assert.deepEqual(sockets, ['d0.sock', 'qmp.sock', 'serial.sock']);

  const second = spawnServe(env);
  serves.push(second);
  assert.equal(await second.exited(), 1, second.output());
  assert.match(
    second.output(),
    new RegExp(`^spindle serve: Spindle already runs for this user: spindle serve, pid ${serve.pid} hosts the VMs`),
  );

  // Same VM files, another runtime directory: that process may host, but not run this VM.
  const otherEnv = { ...env, XDG_RUNTIME_DIR: join(dir, 'run-other') };
  const elsewhere = cli(['start', 'guest'], otherEnv);
  assert.equal(elsewhere.code, 1, elsewhere.stderr);
  assert.match(
    elsewhere.stderr,
    new RegExp(`^spindle vm: VM 'guest' is already running in another Spindle process \\(pid ${serve.pid}\\)\\.\\n$`),
  );
  assert.match(
    ok(cli(['list'], otherEnv), 'vm list elsewhere'),
    new RegExp(`^guest\\s+running in another Spindle process \\(pid ${serve.pid}\\)\\s+guest$`, 'm'),
  );
  const setElsewhere = cli(['set-disk', 'guest', 'd0', '--aio', 'threads'], otherEnv);
  assert.equal(setElsewhere.code, 1);
  assert.match(setElsewhere.stderr, /is running in another Spindle process .*, so it cannot change its disks from here/);
  assert.deepEqual(readdirSync(runDir).sort(), sockets, "serve's sockets are untouched");
  assert.equal(show().state, 'running');
  assert.equal(
    await guest.result('dd if=/dev/vda bs=1M skip=24 count=4 iflag=direct 2>/dev/null | md5sum | cut -d" " -f1'),
    after,
    'the guest still reads its disk',
  );

  // ── vm stop stops it in serve (the test guest has no ACPI daemon: forced off after the timeout).
  const stopped = VmInfo.parse(JSON.parse(ok(cli(['stop', 'guest', '--timeout', '5', '--json']), 'vm stop')));
  assert.equal(stopped.state, 'stopped');
  assert.match(ok(cli(['list']), 'vm list'), /^guest\s+stopped\s+guest$/m);
  assert.equal(existsSync(join(runDir, 'd0.sock')), false, 'serve removed its own sockets');
  assert.equal(existsSync(`/proc/${started.pid}`), false, 'QEMU is gone');

  await serve.stop();
  assert.equal(serve.proc.exitCode, 0, serve.output());
  assert.equal(existsSync(join(env.XDG_RUNTIME_DIR!, 'spindle', 'api.sock')), false);
});

test('without a host, a foreground vm start hosts: other terminals list, switch and stop its VM, and serve refuses meanwhile', async () => {
  const boot = await guestBoot();
  const fgEnv = isolatedEnv(join(dir, 'fg'));
  const image = makeFile(join(dir, 'fg.img'), 32 * MiB);
  ok(
    cli(
      [
        'create',
        'fg',
        '--memory',
        '256',
        '--kernel',
        boot.kernel,
        '--initrd',
        boot.initrd,
        '--append',
        boot.cmdline,
        '--disk',
        image,
        '--no-display',
        '--no-net',
      ],
      fgEnv,
    ),
    'vm create',
  );
  // --console: the guest's serial console on stdout, stdin to the guest.
  const fg = spawn(process.execPath, [resolve('bin/spindle.js'), 'vm', 'start', 'fg', '--console'], {
    cwd: dir,
    env: fgEnv,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let consoleOut = '';
  fg.stdout!.on('data', (d) => ((out += d), (consoleOut += d)));
  fg.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => fg.once('exit', (code) => r(code)));
  try {
    await waitFor(
      () => {
        if (fg.exitCode !== null) throw new Error(`vm start exited (${fg.exitCode}):\n${out}`);
        return /runs in this process/.test(out);
      },
      { timeoutMs: 120_000, intervalMs: 100, what: 'vm start to say it hosts the VM', detail: () => out },
    );
    assert.match(ok(cli(['list'], fgEnv), 'vm list'), /^fg\s+running\s+fg$/m);
    const serve = spawnServe(fgEnv);
    serves.push(serve);
    assert.equal(await serve.exited(), 1, serve.output());
    assert.match(
      serve.output(),
      new RegExp(`^spindle serve: Spindle already runs for this user: spindle vm start, pid ${fg.pid} hosts the VMs`),
    );

    const guest = new SocketGuest('fg', fgEnv);
    await guest.ready();
    // The console: the guest's output reached stdout, and a line typed on stdin runs in the guest.
    await waitFor(() => consoleOut.includes(AGENT_READY), { timeoutMs: 60_000, what: 'the guest agent on the --console stdout' });
    const token = randomBytes(6).toString('hex');
    fg.stdin!.write(`${token} ${Buffer.from('echo typed-$((6*7))').toString('base64')}\n`);
    await waitFor(() => new RegExp(`typed-42[\\s\\S]*${AGENT_END_PREFIX}${token}_0__`).test(consoleOut), {
      timeoutMs: 120_000,
      what: 'the command typed on --console stdin to run in the guest and answer on stdout',
      detail: () => consoleOut.slice(-1500),
    });
    ok(cli(['set-disk', 'fg', 'd0', '--aio', 'io_uring'], fgEnv), 'vm set-disk');
    assert.deepEqual(show('fg', fgEnv).disks[0]!.modes, { aio: 'io_uring', cache: 'writeback', nowait: 'off' });
    assert.ok(ioUrings(fg.pid!) > 0, 'the foreground process serves the disk with io_uring');
    const md5 = await guestWrite(guest, 4);
    assert.equal(hostMd5(image, 4, 4), md5);

    const stopped = VmInfo.parse(JSON.parse(ok(cli(['stop', 'fg', '--timeout', '5', '--json'], fgEnv), 'vm stop')));
    assert.equal(stopped.state, 'stopped');
    const code = await Promise.race([
      exited,
      new Promise<never>((_, fail) =>
        setTimeout(() => fail(new Error(`vm start did not exit after its VM stopped:\n${out}`)), 60_000).unref(),
      ),
    ]);
    assert.equal(code, 0, out);
    assert.match(out, /'fg' is stopped\./);
    assert.equal(existsSync(join(fgEnv.XDG_RUNTIME_DIR!, 'spindle', 'api.sock')), false, 'the host gave up its socket');
  } finally {
    if (fg.exitCode === null) {
      fg.kill('SIGTERM');
      await exited;
    }
  }
});
