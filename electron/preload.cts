// The renderer's only bridge to the main process (contextIsolation + sandbox). A sandboxed
// preload can require nothing but 'electron' (no local modules), so the channel names below are
// spelled out; tests/unit/ws-preload.test.ts checks they match electron/api/bridge.ts's IPC.
// It exposes the API's message pipe (contract envelopes, checked by ApiSession in main), the
// native file dialog and VNC byte channels: no ipcRenderer, no Node.
import { contextBridge, ipcRenderer } from 'electron';
import type { ElectronBridge, FilePickOptions } from './api/bridge.js';
import type { WireMessage } from './shared/api.js';

const vncChannels = new Map<number, { onData: (b: Uint8Array) => void; onClose: (reason: string) => void }>();
ipcRenderer.on('spindle:vnc-data', (_e, ch, bytes) => vncChannels.get(ch as number)?.onData(bytes as Uint8Array));
ipcRenderer.on('spindle:vnc-closed', (_e, ch, reason) => {
  const c = vncChannels.get(ch as number);
  vncChannels.delete(ch as number);
  c?.onClose(String(reason));
});

const bridge: ElectronBridge = {
  transport: 'ipc',
  send(text: string) {
    if (typeof text === 'string') ipcRenderer.send('spindle:api', text);
  },
  onMessage(listener: (msg: WireMessage) => void) {
    ipcRenderer.removeAllListeners('spindle:api');
    ipcRenderer.on('spindle:api', (_e, msg) => listener(msg as WireMessage));
  },
  pickFile(options: FilePickOptions) {
    return ipcRenderer.invoke('spindle:pick-file', options) as Promise<string | null>;
  },
  async vncOpen(vmId: string, onData: (b: Uint8Array) => void, onClose: (reason: string) => void) {
    const ch = (await ipcRenderer.invoke('spindle:vnc-open', vmId)) as number;
    vncChannels.set(ch, { onData, onClose });
    return ch;
  },
  vncSend(channel: number, bytes: Uint8Array) {
    ipcRenderer.send('spindle:vnc-send', channel, bytes);
  },
  vncClose(channel: number) {
    vncChannels.delete(channel);
    ipcRenderer.send('spindle:vnc-close', channel);
  },
};

contextBridge.exposeInMainWorld('spindle', bridge);
