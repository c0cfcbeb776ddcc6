// `spindle serve [--port N] [--open]`: the app in a browser. Serves the built renderer and the
// API over a WebSocket on 127.0.0.1 with a random token, backed by the same backend as the
// Electron shell. Like the app it hosts the VMs: it answers the `spindle vm` commands on the local
// API socket, and refuses to start while another Spindle process hosts them
// (api/local-socket-host.ts). Stops (draining every disk) on SIGINT/SIGTERM. `--headless`: no UI
// and no WebSocket, only the host and its local socket, for a machine without a desktop (a systemd
// user unit, README). Either way it starts the VMs marked "start when Spindle starts".
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Command } from './main.js';
import { SpindleError, errnoOf } from '../shared/errors.js';
import { startHostedBackend, type HostedBackend } from '../api/local-socket-host.js';
import { startAutostartVms } from '../host/vm/autostart-vms.js';
import { startServer } from '../api/ws-server.js';

/** renderer/dist, from dist/electron/cli/serve.js. */
export const RENDERER_DIST = fileURLToPath(new URL('../../../renderer/dist', import.meta.url));

export function parsePort(v: string | undefined): number {
  if (v === undefined) return 0;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isInteger(n) || n < 0 || n > 65535) {
    throw new SpindleError('INVALID_ARGUMENT', `--port must be a whole number from 0 (any free port) to 65535, not '${v}'.`);
  }
  return n;
}

const command: Command = {
  summary: 'Serve the app to a browser: the UI and its API on 127.0.0.1, with a random token in the URL',
  usage: 'spindle serve [--port N] [--open] | spindle serve --headless',
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: { port: { type: 'string' }, open: { type: 'boolean', default: false }, headless: { type: 'boolean', default: false } },
      strict: true,
    });
    const port = parsePort(values.port);
    if (values.headless && (values.port !== undefined || values.open))
      throw new SpindleError('INVALID_ARGUMENT', '--headless serves no UI, so --port and --open do not go with it.');
    if (values.headless) return headless();
    if (!existsSync(`${RENDERER_DIST}/index.html`)) {
      throw new SpindleError('NOT_FOUND', `The UI is not built (${RENDERER_DIST}/index.html is missing); run: npm run build:ui`);
    }
    const hosted = await startHostedBackend('spindle serve');
    const { backend } = hosted;
    let server;
    try {
      backend.ensureScratchDisk();
      server = await startServer({
        handler: backend.router,
        staticDir: RENDERER_DIST,
        port,
        vncSocketPath: (id) => backend.manager.vncSocketPath(id),
      });
    } catch (err) {
      await hosted.close();
      if (errnoOf(err) === 'EADDRINUSE')
        throw new SpindleError(
          'CONFLICT',
          `Port ${port} on 127.0.0.1 is already in use; choose another with --port, or leave it out to pick a free one.`,
        );
      throw err;
    }
    console.log(`listening ${server.url}`);
    if (values.open) {
      const child = spawn('xdg-open', [server.url], { stdio: 'ignore', detached: true });
      child.on('error', () => console.error('spindle serve: could not run xdg-open; open the URL above in a browser.'));
      child.unref();
    }
    const running = server;
    void autostart(hosted);
    await untilSignal(() => running.close().then(() => hosted.close()));
    return 0;
  },
};

function autostart(hosted: HostedBackend): Promise<unknown> {
  return startAutostartVms(hosted.backend.manager, (line) => console.error(`spindle serve: ${line}`));
}

/** Waits for SIGINT or SIGTERM, then runs `stop` (VMs shut down, disks drained). */
function untilSignal(stop: () => Promise<void>): Promise<void> {
  return new Promise<void>((done) => {
    const onSignal = () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      console.error('spindle serve: stopping (shutting down VMs and draining disks)…');
      void stop().finally(done);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** The host without a UI: the local API socket for `spindle vm`, and the autostart VMs. */
async function headless(): Promise<number> {
  const hosted = await startHostedBackend('spindle serve');
  console.log(`hosting ${hosted.host.socketPath} (headless: use the spindle vm commands)`);
  void autostart(hosted);
  await untilSignal(() => hosted.close());
  return 0;
}

export default command;
