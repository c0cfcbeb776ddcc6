// A separate process holding a Spindle lock file (electron/host/vm/lock-file.ts), as another Spindle
// process running a VM or hosting the VMs would: for the tests of what this process then refuses.
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface LockHolder {
  proc: ChildProcess;
  pid: number;
  /** SIGKILL, and waits for the exit. */
  kill(): Promise<void>;
}

/** Starts a node process that takes the lock on `path` (with `role`) and holds it until killed. */
export async function holdLock(path: string, role?: string): Promise<LockHolder> {
  const mod = pathToFileURL(resolve('dist/electron/host/vm/lock-file.js')).href;
  const script = `const { tryLock } = await import(${JSON.stringify(mod)});
const held = tryLock(${JSON.stringify(path)}${role ? `, ${JSON.stringify(role)}` : ''});
console.log(held ? 'locked' : 'busy');
setInterval(() => {}, 60000);`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the lock holder did not report within 30 s: ${out}`)), 30_000);
    proc.stdout!.on('data', () => {
      if (out.includes('locked')) {
        clearTimeout(timer);
        ok();
      } else if (out.includes('busy')) {
        clearTimeout(timer);
        fail(new Error(`the lock holder found ${path} locked already`));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`the lock holder exited (${code}): ${out}`));
    });
  });
  return {
    proc,
    pid: proc.pid!,
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGKILL');
      await gone;
    },
  };
}
