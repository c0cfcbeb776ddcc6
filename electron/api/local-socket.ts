// The CLI's way to a running backend: newline-delimited JSON calls over a unix socket in the 0700
// runtime directory (file permissions are the authentication: only this user can connect).
// Whoever hosts the VMs (the app, `spindle serve`, or a foreground `spindle vm start`) listens here;
// local-socket-host.ts makes sure only one process does.
import { createServer, createConnection, type Server } from 'node:net';
import { rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { runtimeDir } from '../host/vm/paths.js';
import { SpindleError } from '../shared/errors.js';
import type { ApiHandler } from './session.js';
import { toApiError } from './errors.js';

export const apiSocketPath = (env: NodeJS.ProcessEnv = process.env): string => join(runtimeDir(env), 'api.sock');
const MAX_LINE = 1 << 20;

/** Listens on the API socket; refuses to steal it from a live backend. */
export async function serveLocalApi(router: ApiHandler, path: string): Promise<Server> {
  if (existsSync(path)) {
    if (await isLive(path)) throw new SpindleError('CONFLICT', `Another Spindle backend already answers on ${path}.`);
    rmSync(path, { force: true }); // stale, from a backend that died
  }
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => {});
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE) return void sock.destroy();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let req: { id?: unknown; method?: unknown; params?: unknown };
        try {
          req = JSON.parse(line);
        } catch {
          sock.write(
            JSON.stringify({ id: null, ok: false, error: { code: 'INVALID_ARGUMENT', message: 'The request is not JSON.' } }) + '\n',
          );
          continue;
        }
        // `null`, numbers, strings and arrays parse too; reading .method off them would throw here,
        // inside a socket callback, and take the whole backend (and every disk) down.
        if (typeof req !== 'object' || req === null || Array.isArray(req)) {
          sock.write(
            JSON.stringify({
              id: null,
              ok: false,
              error: { code: 'INVALID_ARGUMENT', message: 'The request must be a JSON object with method and params.' },
            }) + '\n',
          );
          continue;
        }
        router.call(String(req.method), req.params).then(
          (result) => sock.write(JSON.stringify({ id: req.id, ok: true, result: result ?? null }) + '\n'),
          (err) => sock.write(JSON.stringify({ id: req.id, ok: false, error: toApiError(err) }) + '\n'),
        );
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  return server;
}

/** Whether something accepts connections on the unix socket `path`. */
export function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A client for one call at a time; null when no backend listens. */
export async function connectLocalApi(
  path: string,
): Promise<{ call(method: string, params: unknown): Promise<unknown>; close(): void } | null> {
  if (!existsSync(path) || !(await isLive(path))) return null;
  const sock = createConnection(path);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  sock.setEncoding('utf8');
  let buf = '';
  let nextId = 1;
  const waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  sock.on('data', (chunk: string) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let msg: { id: number; ok: boolean; result?: unknown; error?: { code: string; message: string } };
      try {
        msg = JSON.parse(line);
      } catch {
        sock.destroy(); // not a Spindle backend: every waiting call fails with the close below
        return;
      }
      const w = waiting.get(msg.id);
      waiting.delete(msg.id);
      if (msg.ok) w?.resolve(msg.result);
      else w?.reject(new SpindleError((msg.error?.code ?? 'INTERNAL') as never, msg.error?.message ?? 'The backend failed.'));
    }
  });
  sock.on('close', () => {
    for (const w of waiting.values()) w.reject(new SpindleError('INTERNAL', 'The Spindle backend went away.'));
    waiting.clear();
  });
  return {
    call(method, params) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        sock.write(JSON.stringify({ id, method, params }) + '\n');
      });
    },
    close: () => sock.destroy(),
  };
}
