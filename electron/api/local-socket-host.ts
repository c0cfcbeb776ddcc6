// One process hosts a user's VMs: the Electron app, `spindle serve`, or a foreground `spindle vm
// start`. It holds the host lock (<runtime>/host.lock, electron/host/vm/lock-file.ts) for its whole life
// and answers the CLI on the local API socket (<runtime>/api.sock) beside it. A second would-be host
// finds the lock taken and refuses naming the first; a socket file left by a host that died is
// stale by definition (only the lock holder listens) and is replaced.
import { rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from 'node:net';
import { runtimeDir } from '../host/vm/paths.js';
import { describeOwner, lockOwner, tryLock } from '../host/vm/lock-file.js';
import { SpindleError } from '../shared/errors.js';
import { apiSocketPath, isLive, serveLocalApi } from './local-socket.js';
import { createBackend, type Backend, type BackendOptions } from './backend.js';
import type { ApiHandler } from './session.js';

/** Who hosts: named in the refusal another would-be host prints. */
export type HostRole = 'the Spindle app' | 'spindle serve' | 'spindle vm start';

export interface HostClaim {
  readonly socketPath: string;
  /** Answers the CLI on the local API socket with `router`. */
  serve(router: ApiHandler): Promise<void>;
  /** Stops answering (the socket goes away; calls in progress finish); the claim stays. */
  stopServing(): Promise<void>;
  /** Gives up hosting: stops serving and drops the lock. Idempotent. */
  release(): Promise<void>;
}

export const hostLockPath = (env: NodeJS.ProcessEnv = process.env): string => join(runtimeDir(env), 'host.lock');

/** Makes this process the host, or refuses (CONFLICT) with a sentence naming the one that is. */
export async function claimHost(role: HostRole, env: NodeJS.ProcessEnv = process.env): Promise<HostClaim> {
  const lockPath = hostLockPath(env);
  const socketPath = apiSocketPath(env);
  const lock = tryLock(lockPath, role);
  if (!lock) {
    const owner = lockOwner(lockPath);
    throw new SpindleError(
      'CONFLICT',
      `Spindle already runs for this user: ${owner ? describeOwner(owner) : 'another Spindle process'} hosts the VMs and answers on ${socketPath}. ` +
        'Use that one (the spindle vm commands talk to it), or stop it first.',
    );
  }
  let server: Server | null = null;
  const stopServing = async (): Promise<void> => {
    const s = server;
    server = null;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    rmSync(socketPath, { force: true }); // ours: we hold the lock
  };
  try {
    // A host from before the lock existed would answer without holding it: do not steal its socket.
    if (existsSync(socketPath) && (await isLive(socketPath))) {
      throw new SpindleError('CONFLICT', `Another Spindle process answers on ${socketPath}; stop it first.`);
    }
    rmSync(socketPath, { force: true }); // stale, from a host that died
  } catch (err) {
    lock.release();
    throw err;
  }
  return {
    socketPath,
    async serve(router) {
      if (server) throw new SpindleError('INTERNAL', 'The local API socket is already being served.');
      server = await serveLocalApi(router, socketPath);
    },
    stopServing,
    async release() {
      try {
        await stopServing();
      } finally {
        lock.release();
      }
    },
  };
}

/** A hosted backend: the host claim, then the backend, then the socket. */
export interface HostedBackend {
  backend: Backend;
  host: HostClaim;
  /** No new calls, then every VM stopped and disk drained, then the claim dropped. */
  close(): Promise<void>;
}

export async function startHostedBackend(role: HostRole, opts: BackendOptions = {}): Promise<HostedBackend> {
  const host = await claimHost(role, opts.env ?? process.env);
  let backend: Backend | undefined;
  try {
    backend = createBackend(opts);
    await host.serve(backend.router);
  } catch (err) {
    await backend?.close();
    await host.release();
    throw err;
  }
  const b = backend;
  return {
    backend: b,
    host,
    async close() {
      await host.stopServing();
      try {
        await b.close();
      } finally {
        await host.release();
      }
    },
  };
}
