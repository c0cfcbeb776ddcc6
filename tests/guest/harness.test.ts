// The harness itself: image builder, command protocol, timeouts, cleanup, the peer's startup errors.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from '../lib/test.js';
import { buildGuestImage, findGuestKernel, resolveModules, sharedLibraries } from '../lib/guest-image.js';
import { tempDir } from '../lib/loop.js';
import { cpuSeconds, killOnExit, stopChild } from '../lib/proc.js';
import { bootGuest, qemuArgs, type Guest } from '../lib/qemu.js';
import { qsdArgs, startQsd } from '../lib/qsd.js';
import { waitFor } from '../lib/wait.js';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('guest image builder', () => {
  it('orders modules after their dependencies and names a missing one', () => {
    const { moduleDir } = findGuestKernel();
    const order = resolveModules(moduleDir, ['virtio_blk', 'ext4']).map((m) =>
      m
        .split('/')
        .at(-1)!
        .replace(/\.ko.*$/, ''),
    );
    for (const [dep, mod] of [
      ['virtio_ring', 'virtio_blk'],
      ['virtio', 'virtio_blk'],
      ['jbd2', 'ext4'],
      ['mbcache', 'ext4'],
    ]) {
      assert.ok(
        order.indexOf(dep!) >= 0 && order.indexOf(dep!) < order.indexOf(mod!),
        `${dep} must load before ${mod}: ${order.join(' ')}`,
      );
    }
    assert.throws(() => resolveModules(moduleDir, ['no_such_module_xyz']), /no_such_module_xyz is neither in .*modules\.dep nor built in/);
  });

  it('finds every shared library and the loader of a dynamic program', () => {
    const libs = sharedLibraries('/usr/sbin/mke2fs');
    assert.ok(
      libs.some((l) => l.endsWith('/libext2fs.so.2')),
      libs.join(' '),
    );
    assert.ok(
      libs.some((l) => /ld-linux-x86-64\.so\.2$/.test(l)),
      libs.join(' '),
    );
  });

  it('reuses the cached initramfs when nothing changed', async () => {
    const first = await buildGuestImage();
    const mtime = statSync(first.initrd).mtimeMs;
    const second = await buildGuestImage();
    assert.equal(second.initrd, first.initrd);
    assert.equal(statSync(second.initrd).mtimeMs, mtime, 'the image was rebuilt although no input changed');
    assert.ok(existsSync(first.kernel));
  });
});

describe('QEMU harness', { concurrency: false }, () => {
  let guest: Guest | undefined;
  before(async () => {
    guest = await bootGuest({ disks: [] });
  });
  after(async () => {
    await guest?.shutdown();
  });

  it('returns exit code and interleaved output, quoting intact', async () => {
    assert.deepEqual(await guest!.run(`echo "a 'b' \\$HOME"; echo err >&2; exit 7`), { code: 7, output: "a 'b' $HOME\nerr\n" });
    assert.equal(await guest!.runOk('printf "%s" "no newline"'), 'no newline');
    assert.equal(await guest!.runOk('printf "two\\nlines\\n"; true'), 'two\nlines\n');
  });

  it('runs commands one after another even when issued together', async () => {
    const outs = await Promise.all([1, 2, 3].map((i) => guest!.runOk(`sleep 0.${i}; echo ${i}`)));
    assert.deepEqual(outs, ['1\n', '2\n', '3\n']);
  });

  it('runOk throws with the output when the command fails', async () => {
    await assert.rejects(guest!.runOk('echo nope; false'), /exit code 1: echo nope; false\nnope/);
  });

  it('a command that overruns its timeout fails and leaves the guest marked unusable', async () => {
    await assert.rejects(guest!.run('echo started; sleep 60', { timeoutMs: 1500 }), /timed out after 1500 ms[\s\S]*started/);
    await assert.rejects(guest!.run('true'), /guest unusable after an earlier failure/);
  });

  it('shutdown kills and reaps QEMU, and is idempotent', async () => {
    const pid = guest!.pid;
    await guest!.shutdown();
    await guest!.shutdown();
    assert.equal(alive(pid), false, `QEMU ${pid} still runs`);
  });
});

describe('harness refusals', () => {
  it('refuses to boot with a disk socket that does not exist', async () => {
    await assert.rejects(
      bootGuest({ disks: [{ socket: '/nonexistent/spindle.sock' }] }),
      /disk 0: vhost-user socket \/nonexistent\/spindle\.sock does not exist/,
    );
  });

  it('builds QEMU argv as an array with shared memory and one chardev per disk', () => {
    const args = qemuArgs({
      accel: 'tcg',
      kernel: '/k',
      initrd: '/i',
      cpus: 2,
      memoryMiB: 256,
      serialLog: '/log',
      disks: [{ socket: '/a,b.sock', queues: 2 }],
    });
    assert.ok(args.includes('memory-backend-memfd,id=mem,size=256M,share=on'));
    assert.ok(args.includes('vhost-user-blk-pci,chardev=d0,num-queues=2'));
    assert.ok(args.includes('socket,id=d0,path=/a,,b.sock,reconnect=1'), 'a comma in a socket path must be escaped');
    assert.ok(args.includes('-no-reboot'));
  });

  it('qemu-storage-daemon gets the cache mode as QEMU options', () => {
    const opts = (cache: Parameters<typeof qsdArgs>[0]['cache']): string =>
      qsdArgs({ path: '/dev/null', socket: '/s', aio: 'native', cache }).join(' ');
    assert.match(opts('none'), /cache\.direct=on,cache\.no-flush=off.*writethrough=off/);
    assert.match(opts('directsync'), /cache\.direct=on.*writethrough=on/);
    assert.match(opts('writethrough'), /cache\.direct=off.*writethrough=on/);
    assert.match(opts('unsafe'), /cache\.no-flush=on/);
  });

  it('qemu-storage-daemon serves a qcow2 image through its qcow2 driver over a file node with the same aio and cache', async () => {
    const d = tempDir();
    try {
      const img = join(d.path, 'x.qcow2');
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', img, '1M']);
      const argv = qsdArgs({ path: img, socket: '/s', aio: 'io_uring', cache: 'none', format: 'qcow2' });
      assert.deepEqual(
        argv.filter((a) => a.startsWith('--')),
        ['--blockdev', '--blockdev', '--export'],
      );
      assert.match(argv[1]!, /^driver=file,node-name=file0,filename=[^,]*x\.qcow2,aio=io_uring,cache\.direct=on,cache\.no-flush=off/);
      assert.match(argv[3]!, /^driver=qcow2,node-name=disk0,file=file0,cache\.direct=on,cache\.no-flush=off/);
      assert.match(argv[5]!, /node-name=disk0/);
      const qsd = await startQsd({ path: img, socket: join(d.path, 's.sock'), aio: 'threads', cache: 'writeback', format: 'qcow2' });
      await qsd.stop();
    } finally {
      d.cleanup();
    }
  });

  it('startQsd refuses a missing file and reports why qemu-storage-daemon did not start', async () => {
    const d = tempDir();
    try {
      const socket = join(d.path, 's.sock');
      await assert.rejects(
        startQsd({ path: join(d.path, 'missing.img'), socket, aio: 'threads', cache: 'writeback' }),
        /missing\.img does not exist/,
      );
      const img = join(d.path, 'x.img');
      writeFileSync(img, Buffer.alloc(1 << 20));
      // QEMU refuses Linux AIO without O_DIRECT, as Spindle does: the daemon's own message must come through.
      await assert.rejects(
        startQsd({ path: img, socket, aio: 'native', cache: 'writeback' }),
        /qemu-storage-daemon exited .*before listening: .*cache\.direct/s,
      );
    } finally {
      d.cleanup();
    }
  });

  it('cpuSeconds counts a busy child process', async () => {
    // The child spins until it has used 0.3 s of CPU by its own count (however long a loaded
    // machine makes that take), says so and idles: cpuSeconds must then see at least that.
    const spin =
      'const t = process.cpuUsage(); for (;;) { const u = process.cpuUsage(t); if (u.user + u.system > 300000) break; } ' +
      "console.log('spun'); setInterval(() => {}, 1000);";
    const child = spawn(process.execPath, ['-e', spin]);
    killOnExit(child);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    await waitFor(() => out.includes('spun') || child.exitCode !== null, {
      timeoutMs: 120_000,
      what: 'the child to spin for 0.3 s of CPU',
    });
    const used = cpuSeconds(child.pid!);
    await stopChild(child);
    assert.ok(used >= 0.25, `busy child used only ${used} s of CPU`);
  });
});
