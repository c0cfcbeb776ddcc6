// What the Electron preload exposes to the renderer (window.spindle) through contextBridge:
// the API's message pipe (contract WireRequest / WireMessage envelopes, checked in the main
// process by ApiSession exactly as over the WebSocket), the native file dialog, and a byte
// channel to a VM's VNC display. Types only: preload.cts, ipc.ts and the renderer share them.
import type { WireMessage } from '../shared/api.js';

export interface FilePickOptions {
  title: string;
  /** 'open' picks an existing file; 'save' names a new one. */
  mode: 'open' | 'save';
  defaultPath?: string;
}

export interface ElectronBridge {
  readonly transport: 'ipc';
  /** Sends one JSON-encoded WireRequest. */
  send(text: string): void;
  /** Registers the single receiver of WireMessages. */
  onMessage(listener: (msg: WireMessage) => void): void;
  /** The native file dialog; null when cancelled. */
  pickFile(options: FilePickOptions): Promise<string | null>;
  /** Opens a byte channel to a running VM's VNC display; returns its channel id. */
  vncOpen(vmId: string, onData: (bytes: Uint8Array) => void, onClose: (reason: string) => void): Promise<number>;
  vncSend(channel: number, bytes: Uint8Array): void;
  vncClose(channel: number): void;
}

/** IPC channel names, one place. */
export const IPC = {
  api: 'spindle:api',
  pickFile: 'spindle:pick-file',
  vncOpen: 'spindle:vnc-open',
  vncData: 'spindle:vnc-data',
  vncSend: 'spindle:vnc-send',
  vncClose: 'spindle:vnc-close',
  vncClosed: 'spindle:vnc-closed',
} as const;
