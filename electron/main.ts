// The Electron shell, kept thin: one window on the built renderer served from the app:// scheme,
// the API router wired to IPC and to the local API socket the `spindle vm` commands use (the app
// hosts the VMs; it refuses to start while `spindle serve` does, api/local-socket-host.ts), an
// application menu, a single-instance lock (launching again shows the window), a tray icon listing
// the VMs, and a quit that asks before stopping running VMs and drains every disk first. Closing
// the window while VMs run only hides it: the VMs, their disks and the CLI's socket keep going
// (host/app/window-close.ts decides, host/app/tray-model.ts says what the tray shows). Everything
// else runs in plain Node and is tested there; this file cannot run without Electron's binary.
import { app, BrowserWindow, Menu, Tray, dialog, ipcMain, nativeImage, protocol, session, type WebContents } from 'electron';
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend } from './api/backend.js';
import { startHostedBackend, type HostedBackend } from './api/local-socket-host.js';
import { wireIpc } from './api/ipc.js';
import { resolveStatic, CONTENT_SECURITY_POLICY } from './api/ws-server.js';
import { trayModel } from './host/app/tray-model.js';
import { onWindowClose, quitQuestion } from './host/app/window-close.js';
import { startAutostartVms } from './host/vm/autostart-vms.js';

const SCHEME = 'app';
const ORIGIN = `${SCHEME}://spindle/`;
const RENDERER_DIST = fileURLToPath(new URL('../../renderer/dist', import.meta.url));
const PRELOAD = fileURLToPath(new URL('./preload.cjs', import.meta.url));
const ICON = fileURLToPath(new URL('../../build/icons/512x512.png', import.meta.url));
const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.map': 'application/json',
  '.woff2': 'font/woff2',
};

let hosted: HostedBackend | null = null;
let backend: Backend | null = null;
let win: BrowserWindow | null = null;
let tray: Tray | null = null;
let quitting = false;
/** Started by the login autostart entry: stay in the tray, no window. */
const HIDDEN = process.argv.includes('--hidden');

// Must happen before 'ready': app:// behaves like a secure, standard origin ('self' in the CSP).
protocol.registerSchemesAsPrivileged([{ scheme: SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true } }]);

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  app.on('second-instance', () => showWindow());
  void app.whenReady().then(start);
}

function serveRenderer(): void {
  protocol.handle(SCHEME, (request) => {
    const url = new URL(request.url);
    const file = url.host === 'spindle' ? resolveStatic(RENDERER_DIST, url.pathname) : null;
    if (!file) return new Response('Not found', { status: 404 });
    return new Response(readFileSync(file), {
      headers: {
        'content-type': MIME[extname(file)] ?? 'application/octet-stream',
        'content-security-policy': CONTENT_SECURITY_POLICY,
        'x-content-type-options': 'nosniff',
      },
    });
  });
}

/** No navigation away from the app, no new windows, no webviews, no permissions. */
function lockDown(contents: WebContents): void {
  contents.on('will-navigate', (e, url) => {
    if (!url.startsWith(ORIGIN)) e.preventDefault();
  });
  contents.on('will-redirect', (e, url) => {
    if (!url.startsWith(ORIGIN)) e.preventDefault();
  });
  contents.on('will-attach-webview', (e) => e.preventDefault());
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
}

function menu(): void {
  Menu.setApplicationMenu(
    Menu.buildFromTemplate([
      { label: 'File', submenu: [{ role: 'quit' }] },
      { role: 'editMenu' },
      {
        label: 'View',
        submenu: [
          { role: 'reload' },
          { role: 'toggleDevTools' },
          { type: 'separator' },
          { role: 'resetZoom' },
          { role: 'zoomIn' },
          { role: 'zoomOut' },
          { type: 'separator' },
          { role: 'togglefullscreen' },
        ],
      },
      { role: 'windowMenu' },
      { label: 'Help', submenu: [{ role: 'about' }] },
    ]),
  );
}

function createWindow(): void {
  win = new BrowserWindow({
    width: 1280,
    height: 800,
    minWidth: 960,
    minHeight: 600,
    title: 'Spindle',
    icon: ICON,
    show: false,
    webPreferences: {
      preload: PRELOAD,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      navigateOnDragDrop: false,
      spellcheck: false,
    },
  });
  win.once('ready-to-show', () => win?.show());
  win.on('close', (e) => {
    if (!backend || onWindowClose(backend.manager.list().vms, quitting) === 'quit') return;
    e.preventDefault(); // VMs run: keep them, hide the window; the tray brings it back
    win?.hide();
  });
  win.on('closed', () => (win = null));
  void win.loadURL(`${ORIGIN}index.html`);
}

function showWindow(): void {
  if (!backend) return;
  if (!win) return createWindow();
  if (win.isMinimized()) win.restore();
  win.show();
  win.focus();
}

/** The tray icon; its menu is rebuilt from trayModel() whenever a VM changes. */
function createTray(b: Backend): void {
  tray = new Tray(nativeImage.createFromPath(ICON).resize({ width: 22, height: 22 }));
  const refresh = () => {
    const model = trayModel(b.manager.list().vms);
    tray?.setToolTip(model.tooltip);
    tray?.setContextMenu(
      Menu.buildFromTemplate(
        model.items.map((i) =>
          i.kind === 'separator'
            ? { type: 'separator' as const }
            : i.kind === 'vm'
              ? { label: i.label, enabled: !!i.vmId, click: () => showWindow() }
              : { label: i.label, click: () => (i.action === 'show' ? showWindow() : app.quit()) },
        ),
      ),
    );
  };
  b.manager.on('vm', refresh);
  tray.on('click', () => showWindow());
  refresh();
}

async function start(): Promise<void> {
  app.on('web-contents-created', (_e, contents) => lockDown(contents));
  session.defaultSession.setPermissionRequestHandler((_wc, _perm, callback) => callback(false));
  session.defaultSession.setPermissionCheckHandler(() => false);
  serveRenderer();
  menu();
  try {
    hosted = await startHostedBackend('the Spindle app', {
      loginCommand: [process.execPath, ...(app.isPackaged ? [] : [app.getAppPath()]), '--hidden'],
    });
    backend = hosted.backend;
    backend.ensureScratchDisk();
  } catch (err) {
    await hosted?.close();
    dialog.showErrorBox('Spindle could not start', (err as Error).message);
    app.exit(1);
    return;
  }
  const b = backend;
  wireIpc(ipcMain, {
    handler: b.router,
    trustedOrigin: ORIGIN,
    vncSocketPath: (id) => b.manager.vncSocketPath(id),
    async pickFile(sender, o) {
      const owner = BrowserWindow.fromWebContents(sender);
      if (!owner) return null;
      if (o.mode === 'save') {
        const r = await dialog.showSaveDialog(owner, {
          title: o.title,
          defaultPath: o.defaultPath,
          properties: ['createDirectory', 'showOverwriteConfirmation'],
        });
        return r.canceled ? null : (r.filePath ?? null);
      }
      const r = await dialog.showOpenDialog(owner, {
        title: o.title,
        defaultPath: o.defaultPath,
        properties: ['openFile', 'showHiddenFiles'],
      });
      return r.canceled ? null : (r.filePaths[0] ?? null);
    },
  });
  createTray(b);
  if (!HIDDEN) createWindow();
  void startAutostartVms(b.manager, (line) => console.error(`spindle: ${line}`));
}

// The window closes for good only when no VM runs (see the 'close' handler); then the app quits.
app.on('window-all-closed', () => app.quit());

// Quitting with running VMs asks first; then VMs are shut down and every disk drained before exit.
app.on('before-quit', (e) => {
  if (quitting || !backend || !hosted) return;
  e.preventDefault();
  const b = backend;
  const h = hosted;
  const question = quitQuestion(b.manager.list().vms);
  const confirm = question
    ? dialog
        .showMessageBox(win?.isVisible() ? win : null, {
          type: 'question',
          title: 'Quit Spindle?',
          message: question.message,
          detail: question.detail,
          buttons: ['Shut down and quit', 'Cancel'],
          defaultId: 1,
          cancelId: 1,
          noLink: true,
        })
        .then((r) => r.response === 0)
    : Promise.resolve(true);
  void confirm.then(async (ok) => {
    if (!ok) return;
    quitting = true;
    try {
      await h.close();
    } finally {
      tray?.destroy();
      app.quit();
    }
  });
});
