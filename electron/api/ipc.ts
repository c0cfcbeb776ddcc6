// The Electron transport: the same ApiSession as the WebSocket, one per renderer (webContents),
// plus the native file dialog and VNC byte channels. Only frames loaded from the app's own
// origin may speak to it; everything else is ignored.
import { connect as netConnect, type Socket } from 'node:net';
import type { IpcMain, IpcMainEvent, WebContents } from 'electron';
import { ApiSession, type ApiHandler } from './session.js';
import { IPC, type FilePickOptions } from './bridge.js';
import { MAX_CLIENT_MESSAGE_BYTES } from './wire.js';
import { VmId } from '../shared/model.js';

export interface IpcWiring {
  handler: ApiHandler;
  /** Frames whose URL starts with this (app://spindle/) may use the API. */
  trustedOrigin: string;
  pickFile(sender: WebContents, options: FilePickOptions): Promise<string | null>;
  vncSocketPath(vmId: string): string | null;
}

/** Wires the API onto ipcMain; returns a function that closes every session and channel. */
export function wireIpc(ipcMain: IpcMain, w: IpcWiring): () => void {
  const sessions = new Map<number, ApiSession>();
  const vnc = new Map<number, { socket: Socket; owner: number }>();
  let nextChannel = 1;

  const trusted = (e: IpcMainEvent) => {
    const url = e.senderFrame?.url ?? '';
    return url.startsWith(w.trustedOrigin);
  };

  function sessionFor(sender: WebContents): ApiSession {
    let s = sessions.get(sender.id);
    if (!s) {
      const id = sender.id;
      s = new ApiSession(w.handler, (msg) => {
        if (!sender.isDestroyed()) sender.send(IPC.api, msg);
      });
      sessions.set(id, s);
      sender.once('destroyed', () => {
        sessions.get(id)?.close();
        sessions.delete(id);
        for (const [ch, c] of vnc) if (c.owner === id) closeVnc(ch);
      });
    }
    return s;
  }

  function closeVnc(ch: number): void {
    const c = vnc.get(ch);
    if (!c) return;
    vnc.delete(ch);
    c.socket.destroy();
  }

  ipcMain.on(IPC.api, (e, text) => {
    if (!trusted(e) || typeof text !== 'string' || text.length > MAX_CLIENT_MESSAGE_BYTES) return;
    sessionFor(e.sender).receive(text);
  });

  ipcMain.handle(IPC.pickFile, async (e, options) => {
    if (!trusted(e)) return null;
    const o = options as Partial<FilePickOptions> | null;
    const title = typeof o?.title === 'string' ? o.title.slice(0, 200) : 'Choose a file';
    const mode = o?.mode === 'save' ? 'save' : 'open';
    const defaultPath = typeof o?.defaultPath === 'string' && o.defaultPath.startsWith('/') ? o.defaultPath : undefined;
    return w.pickFile(e.sender, { title, mode, defaultPath });
  });

  ipcMain.handle(IPC.vncOpen, (e, vmId) => {
    if (!trusted(e)) throw new Error('refused');
    const id = VmId.safeParse(vmId);
    const path = id.success ? w.vncSocketPath(id.data) : null;
    if (!path) throw new Error('This VM has no display to connect to; start it first.');
    const ch = nextChannel++;
    const sender = e.sender;
    const socket = netConnect(path);
    vnc.set(ch, { socket, owner: sender.id });
    socket.on('data', (chunk) => {
      if (!sender.isDestroyed()) sender.send(IPC.vncData, ch, new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    });
    const closed = (reason: string) => {
      if (!vnc.has(ch)) return;
      vnc.delete(ch);
      if (!sender.isDestroyed()) sender.send(IPC.vncClosed, ch, reason);
    };
    socket.on('error', () => closed('The VM display is not reachable.'));
    socket.on('close', () => closed('The display closed.'));
    return new Promise<number>((ok, fail) => {
      socket.once('connect', () => ok(ch));
      socket.once('error', () => fail(new Error('The VM display is not reachable.')));
    });
  });

  ipcMain.on(IPC.vncSend, (e, ch, bytes) => {
    const c = typeof ch === 'number' ? vnc.get(ch) : undefined;
    if (!c || c.owner !== e.sender.id || !(bytes instanceof Uint8Array)) return;
    c.socket.write(bytes);
  });

  ipcMain.on(IPC.vncClose, (e, ch) => {
    const c = typeof ch === 'number' ? vnc.get(ch) : undefined;
    if (c && c.owner === e.sender.id) closeVnc(ch as number);
  });

  return () => {
    for (const s of sessions.values()) s.close();
    sessions.clear();
    for (const ch of [...vnc.keys()]) closeVnc(ch);
    for (const c of [IPC.api, IPC.vncSend, IPC.vncClose]) ipcMain.removeAllListeners(c);
    ipcMain.removeHandler(IPC.pickFile);
    ipcMain.removeHandler(IPC.vncOpen);
  };
}
