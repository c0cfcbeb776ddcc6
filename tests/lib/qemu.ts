// Boots the test guest (tests/lib/guest-image.ts) under QEMU with vhost-user-blk disks and runs
// shell commands in it over the second serial port. Every QEMU started here is killed when the
// test process exits, whatever happened to the test.
import { resolveAccelerator } from '../../electron/host/vm/launcher.js';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENT_END_PREFIX, AGENT_READY, buildGuestImage } from './guest-image.js';
import { killOnExit } from './proc.js';

export interface GuestDiskSpec {
  /** vhost-user-blk backend socket (qemu-storage-daemon, `spindle export`, …). */
  socket: string;
  /** virtqueues offered to the guest (default 1). */
  queues?: number;
  bootindex?: number;
}

export interface BootOptions {
  disks: GuestDiskSpec[];
  cpus?: number;
  memoryMiB?: number;
  /** Where the kernel console (ttyS0) goes; default a temp file removed on shutdown. */
  serialLog?: string;
  /** How long to wait for the guest's agent (default 180 s: TCG on a shared 2-core machine). */
  bootTimeoutMs?: number;
}

export interface RunResult {
  code: number;
  output: string;
}

export interface Guest {
  readonly pid: number;
  readonly accel: 'kvm' | 'tcg';
  readonly serialLog: string;
  /** Runs `cmd` with /bin/sh in the guest; output is stdout and stderr interleaved. */
  run(cmd: string, opts?: { timeoutMs?: number }): Promise<RunResult>;
  /** Like run, but throws (with the output) when the exit code is not 0; returns the output. */
  runOk(cmd: string, opts?: { timeoutMs?: number }): Promise<string>;
  /** Powers the guest off, kills QEMU if it does not stop in time; always reaps it. Idempotent. */
  shutdown(): Promise<void>;
  /** QEMU's state, the end of its stderr and of the guest console: for failure messages. */
  describe(): string;
}

let warnedTcg = false;

export function qemuArgs(o: {
  accel: 'kvm' | 'tcg';
  kernel: string;
  initrd: string;
  cpus: number;
  memoryMiB: number;
  serialLog: string;
  disks: GuestDiskSpec[];
}): string[] {
  const args = [
    '-machine',
    `q35,accel=${o.accel}`,
    ...(o.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-smp',
    String(o.cpus),
    '-m',
    `${o.memoryMiB}M`,
    // vhost-user backends map guest memory, so it must be a shareable fd.
    '-object',
    `memory-backend-memfd,id=mem,size=${o.memoryMiB}M,share=on`,
    '-numa',
    'node,memdev=mem',
  ];
  o.disks.forEach((d, i) => {
    args.push('-chardev', `socket,id=d${i},path=${d.socket.replace(/,/g, ',,')},reconnect=1`); // QEMU option syntax: ',,' is a literal comma
    args.push(
      '-device',
      `vhost-user-blk-pci,chardev=d${i},num-queues=${d.queues ?? 1}${d.bootindex !== undefined ? `,bootindex=${d.bootindex}` : ''}`,
    );
  });
  args.push(
    '-kernel',
    o.kernel,
    '-initrd',
    o.initrd,
    '-append',
    // no_timer_check: under TCG on a loaded host the kernel's boot-time IO-APIC timer check can
    // miss its window and panic ("IO-APIC + timer doesn't work!"); virtual machines skip it.
    'console=ttyS0 quiet panic=1 i8042.noaux i8042.nokbd no_timer_check',
    '-nographic',
    '-nodefaults',
    '-chardev',
    `file,id=console,path=${o.serialLog}`,
    '-serial',
    'chardev:console',
    '-chardev',
    'stdio,id=agent,signal=off',
    '-serial',
    'chardev:agent',
    '-no-reboot',
  );
  return args;
}

export async function bootGuest(opts: BootOptions): Promise<Guest> {
  // QEMU would wait forever for a backend that never comes: say so up front instead.
  opts.disks.forEach((d, i) => {
    if (!existsSync(d.socket))
      throw new Error(`disk ${i}: vhost-user socket ${d.socket} does not exist; start its disk server before booting`);
  });
  const image = await buildGuestImage();
  // The product's rule (SPINDLE_ACCEL=kvm|tcg forces one; otherwise KVM only where QEMU really runs a vCPU on it).
  const { accel, warning } = await resolveAccelerator('qemu-system-x86_64');
  if (warning && !warnedTcg) {
    warnedTcg = true;
    process.stderr.write(`qemu: ${warning}\n`);
  }
  const work = mkdtempSync(join(tmpdir(), 'spindle-qemu-'));
  const serialLog = opts.serialLog ?? join(work, 'console.log');
  const args = qemuArgs({
    accel,
    kernel: image.kernel,
    initrd: image.initrd,
    cpus: opts.cpus ?? 1,
    memoryMiB: opts.memoryMiB ?? 512,
    serialLog,
    disks: opts.disks,
  });
  const child = spawn('qemu-system-x86_64', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  killOnExit(child);

  let out = '';
  let stderr = '';
  let exited: { code: number | null; signal: string | null } | null = null;
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    out += d;
    wake();
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    stderr = (stderr + d).slice(-16384);
  });
  const exitPromise = new Promise<void>((res) =>
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      wake();
      res();
    }),
  );
  child.stdin.on('error', () => {
    /* QEMU gone: reported through `exited` */
  });

  const consoleTail = (): string => {
    try {
      return readFileSync(serialLog, 'utf8').slice(-4000);
    } catch {
      return '';
    }
  };
  const describe = (): string =>
    `${exited ? `QEMU exited (code ${exited.code}, signal ${exited.signal})` : `QEMU pid ${child.pid}`}` +
    `${stderr.trim() ? `\n--- qemu stderr ---\n${stderr.trim()}` : ''}\n--- guest console (${serialLog}) ---\n${consoleTail()}`;

  /** Resolves with `match(out)` once it is non-null; rejects on QEMU exit or timeout. */
  const waitFor = <T>(match: () => T | null, timeoutMs: number, what: string): Promise<T> =>
    new Promise<T>((res, rej) => {
      const check = (): void => {
        const m = match();
        if (m !== null) {
          done();
          res(m);
        } else if (exited) {
          done();
          rej(new Error(`${what}: ${describe()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        rej(new Error(`${what}: timed out after ${timeoutMs} ms\n${describe()}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  let broken: string | null = null;
  let queue: Promise<unknown> = Promise.resolve();
  let shuttingDown: Promise<void> | null = null;

  const shutdown = (): Promise<void> => {
    shuttingDown ??= (async () => {
      if (!exited && !broken) {
        child.stdin.write(`poweroff ${Buffer.from('sync; poweroff -f').toString('base64')}\n`);
        await Promise.race([exitPromise, new Promise((r) => setTimeout(r, 30_000).unref())]);
      }
      if (!exited) {
        child.kill('SIGKILL');
        await exitPromise;
      }
      rmSync(work, { recursive: true, force: true }); // a caller's serialLog lives elsewhere and stays
    })();
    return shuttingDown;
  };

  try {
    await waitFor(() => (out.includes(AGENT_READY) ? true : null), opts.bootTimeoutMs ?? 180_000, 'guest did not boot');
  } catch (err) {
    await shutdown();
    throw err;
  }
  out = out.slice(out.indexOf(AGENT_READY) + AGENT_READY.length);

  const runOnce = async (cmd: string, timeoutMs: number): Promise<RunResult> => {
    if (broken) throw new Error(`guest unusable after an earlier failure: ${broken}`);
    if (exited || shuttingDown) throw new Error(`guest is not running: ${describe()}`);
    const token = randomBytes(6).toString('hex');
    const marker = new RegExp(`\\n${AGENT_END_PREFIX}${token}_(\\d+)__\\n`);
    out = '';
    child.stdin.write(`${token} ${Buffer.from(cmd).toString('base64')}\n`);
    try {
      return await waitFor(
        () => {
          const m = marker.exec(out);
          if (!m) return null;
          const result = { code: Number(m[1]), output: out.slice(0, m.index) };
          out = out.slice(m.index + m[0].length);
          return result;
        },
        timeoutMs,
        `guest command ${JSON.stringify(cmd)}`,
      );
    } catch (err) {
      broken = `command ${JSON.stringify(cmd)} did not finish`;
      throw new Error(`${(err as Error).message}\n--- command output so far ---\n${out}`);
    }
  };

  const run = (cmd: string, o: { timeoutMs?: number } = {}): Promise<RunResult> => {
    const next = queue.then(() => runOnce(cmd, o.timeoutMs ?? 120_000));
    queue = next.catch(() => undefined);
    return next;
  };

  return {
    pid: child.pid!,
    accel,
    serialLog,
    run,
    async runOk(cmd, o) {
      const r = await run(cmd, o);
      if (r.code !== 0) throw new Error(`guest command failed with exit code ${r.code}: ${cmd}\n${r.output}`);
      return r.output;
    },
    shutdown,
    describe,
  };
}

/** Boots a guest, hands it to `fn`, and always shuts it down. */
export async function withGuest<T>(opts: BootOptions, fn: (g: Guest) => Promise<T>): Promise<T> {
  const guest = await bootGuest(opts);
  try {
    return await fn(guest);
  } finally {
    await guest.shutdown();
  }
}

export const qemuAvailable = (): boolean => existsSync('/usr/bin/qemu-system-x86_64');
