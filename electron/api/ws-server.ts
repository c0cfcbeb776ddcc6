// `spindle serve`'s transport: the built renderer and the API over one WebSocket, on 127.0.0.1
// only. Every request must carry the random token (query `?token=` or the cookie set when the
// page first loads with it), come from this server's own origin when a browser says where it
// comes from, and name this server as its Host (so a DNS-rebinding page cannot reach it).
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, realpathSync, statSync } from 'node:fs';
import { extname, resolve, sep } from 'node:path';
import type { Duplex } from 'node:stream';
import { connect as netConnect } from 'node:net';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { ApiSession, type ApiHandler } from './session.js';
import { MAX_CLIENT_MESSAGE_BYTES } from './wire.js';
import { VmId } from '../shared/model.js';

export interface ServeOptions {
  handler: ApiHandler;
  /** The built renderer (renderer/dist). */
  staticDir: string;
  /** 0 picks a free port. */
  port?: number;
  /** Fixed token for tests; random otherwise. */
  token?: string;
  /** QEMU's VNC unix socket of a running VM (the VM manager's vncSocketPath), or null. */
  vncSocketPath?: (vmId: string) => string | null;
}

export interface RunningServer {
  readonly port: number;
  readonly token: string;
  /** http://127.0.0.1:PORT/?token=… */
  readonly url: string;
  readonly server: Server;
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
export const API_PATH = '/api';
/** `/vnc/<vmId>`: a binary WebSocket piped to that VM's VNC socket, for noVNC. */
export const VNC_PREFIX = '/vnc/';

/** Same policy as the page's <meta> CSP; sent as a header too so it also covers every asset. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  // xterm.js and uPlot size their elements through style elements/attributes; scripts stay strict.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self'",
  "connect-src 'self'",
  "worker-src 'self' blob:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
  '.map': 'application/json',
};

function sameToken(given: string | undefined | null, token: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieToken(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Why this request is refused, or null when it may proceed. */
export function refusal(req: IncomingMessage, port: number, token: string): string | null {
  const host = req.headers.host;
  if (host !== `${HOST}:${port}` && host !== `localhost:${port}`) return 'wrong host';
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${HOST}:${port}` && origin !== `http://localhost:${port}`) return 'foreign origin';
  const url = new URL(req.url ?? '/', `http://${HOST}:${port}`);
  if (!sameToken(url.searchParams.get('token'), token) && !sameToken(cookieToken(req, cookieName(port)), token))
    return 'missing or wrong token';
  return null;
}

const cookieName = (port: number) => `spindle_token_${port}`;

/** Maps a URL path to a file under root, or null when it would leave root or is not a file. */
export function resolveStatic(root: string, urlPath: string): string | null {
  let path: string;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (path.includes('\0') || path.includes('\\')) return null;
  if (path === '/' || path === '') path = '/index.html';
  const realRoot = realpathSync(root);
  const candidate = resolve(realRoot, '.' + path);
  if (candidate !== realRoot && !candidate.startsWith(realRoot + sep)) return null;
  let real: string;
  try {
    real = realpathSync(candidate); // a symlink inside root must not lead outside it
    if (!statSync(real).isFile()) return null;
  } catch {
    return null;
  }
  if (!real.startsWith(realRoot + sep)) return null;
  return real;
}

function refuse(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text + '\n');
}

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const token = opts.token ?? randomBytes(24).toString('base64url');
  let port = 0;
  const sockets = new Set<WebSocket>();
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_CLIENT_MESSAGE_BYTES });

  const server = createServer((req, res) => {
    const why = refusal(req, port, token);
    if (why) return refuse(res, 403, `Forbidden: ${why}. Open the URL \`spindle serve\` printed.`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(res, 405, 'Method not allowed.');
    const url = new URL(req.url ?? '/', `http://${HOST}:${port}`);
    const file = resolveStatic(opts.staticDir, url.pathname);
    if (!file) return refuse(res, 404, 'Not found.');
    const headers: Record<string, string | string[]> = {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-security-policy': CONTENT_SECURITY_POLICY,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-cache',
      'cross-origin-opener-policy': 'same-origin',
    };
    // The page's assets are fetched without the query string: the cookie carries the token for them.
    if (sameToken(url.searchParams.get('token'), token)) {
      headers['set-cookie'] = `${cookieName(port)}=${token}; Path=/; HttpOnly; SameSite=Strict`;
    }
    res.writeHead(200, headers);
    if (req.method === 'HEAD') return res.end();
    createReadStream(file)
      .on('error', () => res.destroy())
      .pipe(res);
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', `http://${HOST}:${port}`);
    const reject = (status: string) => socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    if (refusal(req, port, token)) return reject('403 Forbidden');
    if (url.pathname === API_PATH) return wss.handleUpgrade(req, socket, head, (ws) => accept(ws));
    if (url.pathname.startsWith(VNC_PREFIX)) {
      const vmId = VmId.safeParse(url.pathname.slice(VNC_PREFIX.length));
      const path = vmId.success ? opts.vncSocketPath?.(vmId.data) : null;
      if (!path) return reject('404 Not Found');
      return wss.handleUpgrade(req, socket, head, (ws) => bridgeVnc(ws, path));
    }
    reject('404 Not Found');
  });

  /** Pipes one noVNC connection to QEMU's VNC socket; either side closing closes both. */
  function bridgeVnc(ws: WebSocket, socketPath: string): void {
    sockets.add(ws);
    const vnc = netConnect(socketPath);
    vnc.on('data', (chunk) => {
      if (ws.readyState === ws.OPEN) ws.send(chunk);
    });
    vnc.on('error', () => ws.close(1011, 'the VM display is not reachable'));
    vnc.on('close', () => ws.close());
    ws.on('message', (data: RawData) => vnc.write(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer)));
    ws.on('close', () => {
      sockets.delete(ws);
      vnc.destroy();
    });
    ws.on('error', () => ws.terminate());
  }

  function accept(ws: WebSocket): void {
    sockets.add(ws);
    const session = new ApiSession(opts.handler, (msg) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(msg));
    });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) {
        ws.close(1003, 'binary requests are not accepted');
        return;
      }
      session.receive(data.toString());
    });
    ws.on('close', () => {
      sockets.delete(ws);
      session.close();
    });
    ws.on('error', () => ws.terminate());
  }

  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, HOST, () => {
      server.off('error', fail);
      ok();
    });
  });
  port = (server.address() as { port: number }).port;
  const url = `http://${HOST}:${port}/?token=${token}`;
  return {
    port,
    token,
    url,
    server,
    close: () =>
      new Promise<void>((ok) => {
        for (const ws of sockets) ws.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
