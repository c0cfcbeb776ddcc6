// One backend per test, in its own temp dir: config, runtime and data directories never touch the
// user's, so parallel tests and the developer's own VMs stay apart.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createBackend } from '../../electron/api/backend.js';
import { SpindleError } from '../../electron/shared/errors.js';

/** process.env with the XDG config, runtime and data directories moved under `dir`. */
export function isolatedEnv(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    XDG_CONFIG_HOME: join(dir, 'cfg'),
    XDG_RUNTIME_DIR: join(dir, 'run'),
    XDG_DATA_HOME: join(dir, 'data'),
    ...extra,
  };
}

/** A backend over a fresh temp dir under `base` (tmpdir by default). */
export function apiSetup(prefix: string, opts: { base?: string; env?: Record<string, string> } = {}) {
  const dir = mkdtempSync(join(opts.base ?? tmpdir(), prefix));
  const env = isolatedEnv(dir, opts.env);
  const backend = createBackend({ env });
  return {
    dir,
    env,
    backend,
    router: backend.router,
    cleanup: async () => {
      await backend.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Asserts `p` rejects with a SpindleError of `code`, its sentence matching `re` when given. */
export const rejectsWith = (p: Promise<unknown>, code: string, re?: RegExp) =>
  assert.rejects(p, (e: SpindleError) => {
    assert.ok(e instanceof SpindleError, `not a SpindleError: ${e}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return true;
  });

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `bin/spindle.js vm …` in a child process, in `dir`, with `env`. */
export function runVmCli(dir: string, env: NodeJS.ProcessEnv, args: string[]): CliResult {
  const r = spawnSync(process.execPath, [resolve('bin/spindle.js'), 'vm', ...args], { cwd: dir, env, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
