// A VM's TPM 2.0: one swtpm process (Debian package swtpm) per running VM, started before QEMU
// and ended after it, its state in a directory kept with the VM's files. QEMU connects to its
// control socket (QEMU docs/specs/tpm.rst, "The QEMU TPM emulator device").
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, rmSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { SpindleError } from '../../shared/errors.js';

const START_TIMEOUT_MS = 10_000;

/** swtpm on PATH, or null. */
export function findSwtpm(env: NodeJS.ProcessEnv = process.env): string | null {
  for (const dir of (env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, 'swtpm');
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

export const NO_SWTPM = 'A TPM needs swtpm, which is not installed (Debian packages swtpm and swtpm-tools).';

export class Swtpm {
  private exitedWith: string | null = null;
  private stderr = '';
  private readonly exited: Promise<void>;

  private constructor(
    private readonly proc: ChildProcess,
    readonly socket: string,
  ) {
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    proc.stderr!.setEncoding('utf8').on('data', (s: string) => (this.stderr = (this.stderr + s).slice(-2000)));
    proc.once('exit', (code, signal) => (this.exitedWith = signal ?? `code ${code}`));
  }

  /** Starts swtpm with its state in `stateDir` and its control socket at `socket`; resolves once the socket listens. */
  static async start(stateDir: string, socket: string, env: NodeJS.ProcessEnv = process.env): Promise<Swtpm> {
    const binary = findSwtpm(env);
    if (!binary) throw new SpindleError('INVALID_ARGUMENT', NO_SWTPM);
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    rmSync(socket, { force: true });
    // --terminate: swtpm ends when QEMU closes the control connection (QEMU exited).
    const proc = spawn(
      binary,
      [
        'socket',
        '--tpm2',
        '--tpmstate',
        `dir=${stateDir},mode=0600`,
        '--ctrl',
        `type=unixio,path=${socket},mode=0600`,
        '--terminate',
        '--log',
        'level=0',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...env, LC_ALL: 'C' } },
    );
    const tpm = new Swtpm(proc, socket);
    await new Promise<void>((resolve, reject) => {
      proc.once('spawn', resolve);
      proc.once('error', (err) => reject(new SpindleError('QEMU_FAILED', `swtpm could not be started: ${err.message}.`)));
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!existsSync(socket)) {
      if (tpm.exitedWith !== null)
        throw new SpindleError('QEMU_FAILED', `swtpm exited (${tpm.exitedWith}) while starting: ${tpm.stderr.trim()}`);
      if (Date.now() > deadline) {
        await tpm.stop();
        throw new SpindleError('QEMU_FAILED', `swtpm did not open its control socket within ${START_TIMEOUT_MS / 1000} s.`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return tpm;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** Ends swtpm (normally it has ended already, with QEMU); its state stays on disk. */
  async stop(): Promise<void> {
    if (this.exitedWith === null) {
      this.proc.kill('SIGTERM');
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 3000);
      await this.exited;
      clearTimeout(timer);
    }
    rmSync(this.socket, { force: true });
  }
}
