// One process hosts the VMs of a user and answers the CLI on the local API socket
// (electron/api/local-socket-host.ts). Real `spindle serve` processes: a second one with the same
// environment refuses with a sentence naming the first; one SIGKILLed leaves a stale socket file
// that the next one replaces; two started at once, exactly one hosts.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isolatedEnv, runVmCli } from '../lib/api.js';
import { spawnServe, type ServeProcess } from '../lib/serve-process.js';
import { connectLocalApi } from '../../electron/api/local-socket.js';

const dir = mkdtempSync(join(tmpdir(), 'spindle-serve-host-'));
const started: ServeProcess[] = [];
after(async () => {
  await Promise.all(started.map((s) => s.stop()));
  rmSync(dir, { recursive: true, force: true });
});

function serve(env: NodeJS.ProcessEnv): ServeProcess {
  const s = spawnServe(env);
  started.push(s);
  return s;
}

const socketOf = (env: NodeJS.ProcessEnv) => join(env.XDG_RUNTIME_DIR!, 'spindle', 'api.sock');

/** The host answers on the local API socket: a vm.list over it works. */
async function answers(env: NodeJS.ProcessEnv): Promise<boolean> {
  const api = await connectLocalApi(socketOf(env));
  if (!api) return false;
  try {
    return Array.isArray(((await api.call('vm.list', {})) as { vms: unknown[] }).vms);
  } finally {
    api.close();
  }
}

test('spindle serve answers the vm commands on the local socket, and a second serve with the same environment refuses naming it', async () => {
  const env = isolatedEnv(join(dir, 'one'));
  const first = serve(env);
  await first.listening();
  assert.equal(await answers(env), true, 'serve listens on the local API socket');
  const created = runVmCli(dir, env, ['create', 'hosted', '--no-display']);
  assert.equal(created.code, 0, created.stderr);
  const stats = runVmCli(dir, env, ['stats']);
  assert.equal(stats.code, 0, stats.stderr);
  assert.doesNotMatch(stats.stdout, /No backend is running/, 'the CLI talked to serve, not to a backend of its own');

  const second = serve(env);
  assert.equal(await second.exited(), 1, second.output());
  const lines = second.output().trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${second.output()}`);
  assert.match(
    lines[0]!,
    new RegExp(
      `^spindle serve: Spindle already runs for this user: spindle serve, pid ${first.pid} hosts the VMs and answers on ${socketOf(env).replace(/[.]/g, '\\.')}\\. Use that one`,
    ),
  );
  assert.equal(await answers(env), true, 'the first serve still answers');
  assert.equal(first.proc.exitCode, null, 'and still runs');

  await first.stop();
  assert.equal(first.proc.exitCode, 0, first.output());
  assert.equal(existsSync(socketOf(env)), false, 'a clean stop removes the socket');
});

test('a SIGKILLed serve leaves its socket file behind; the next serve replaces it and answers', async () => {
  const env = isolatedEnv(join(dir, 'two'));
  const killed = serve(env);
  await killed.listening();
  killed.proc.kill('SIGKILL');
  await killed.exited();
  assert.equal(existsSync(socketOf(env)), true, 'the dead serve left api.sock');
  assert.equal(await answers(env), false, 'nobody answers on it');
  const next = serve(env);
  await next.listening();
  assert.equal(await answers(env), true, 'the new serve answers on the same path');
  await next.stop();
});

test('two serves started at the same moment: exactly one hosts, the other refuses', async () => {
  for (let round = 0; round < 3; round++) {
    const env = isolatedEnv(join(dir, `race-${round}`));
    const a = serve(env);
    const b = serve(env);
    const outcome = (s: ServeProcess) =>
      s.listening().then(
        () => 'hosts',
        () => (s.proc.exitCode === 1 ? 'refused' : `failed: ${s.output()}`),
      );
    const results = await Promise.all([outcome(a), outcome(b)]);
    assert.deepEqual([...results].sort(), ['hosts', 'refused'], `round ${round}: ${results.join(', ')}\n${a.output()}\n${b.output()}`);
    assert.equal(await answers(env), true);
    await Promise.all([a.stop(), b.stop()]);
  }
});
