// A real `spindle serve` process (the built CLI) with the environment a test chooses, so several can
// share one (the second must refuse) or be killed and replaced. tests/e2e/lib/serve.ts starts one
// with its own private directories for the UI tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';

export interface ServeProcess {
  proc: ChildProcess;
  pid: number;
  output(): string;
  /** The URL once it listens; rejects (with its output) if it exits first or within `timeoutMs`. */
  listening(timeoutMs?: number): Promise<string>;
  /** Its exit code once it has exited (rejects after `timeoutMs`). */
  exited(timeoutMs?: number): Promise<number | null>;
  /** SIGTERM (it shuts VMs down and drains disks), SIGKILL after `timeoutMs`; resolves on exit. */
  stop(timeoutMs?: number): Promise<void>;
}

export function spawnServe(env: NodeJS.ProcessEnv, args: string[] = []): ServeProcess {
  const proc = spawn(process.execPath, [resolve('bin/spindle.js'), 'serve', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const gone = () => proc.exitCode !== null || proc.signalCode !== null;
  return {
    proc,
    pid: proc.pid!,
    output: () => out,
    listening(timeoutMs = 60_000) {
      return new Promise((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`spindle serve printed no URL within ${timeoutMs} ms:\n${out}`)), timeoutMs);
        const check = () => {
          const m = /listening (http:\/\/127\.0\.0\.1:\d+\/\?token=\S+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            ok(m[1]!);
          }
        };
        proc.stdout!.on('data', check);
        check();
        void exit.then((code) => {
          clearTimeout(timer);
          fail(new Error(`spindle serve exited (${code}) before listening:\n${out}`));
        });
      });
    },
    exited(timeoutMs = 60_000) {
      return Promise.race([
        exit,
        new Promise<never>((_, fail) =>
          setTimeout(() => fail(new Error(`spindle serve did not exit within ${timeoutMs} ms:\n${out}`)), timeoutMs).unref(),
        ),
      ]);
    },
    async stop(timeoutMs = 60_000) {
      if (gone()) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      await exit;
      clearTimeout(t);
    },
  };
}
