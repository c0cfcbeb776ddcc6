// The renderer's only door to the backend. It speaks the contract's wire envelopes over
// whichever transport exists: Electron IPC through the preload's bridge (window.spindle), or
// the WebSocket of `spindle serve`. Nothing else in the renderer knows about transports.
import type {
  ApiError,
  MethodName,
  Params,
  Result,
  SpindleApi,
  TopicEvent,
  TopicName,
  TopicParams,
  WireMessage,
  WireRequest,
} from '../../../electron/shared/api.js';
import type { ElectronBridge, FilePickOptions } from '../../../electron/api/bridge.js';

declare global {
  interface Window {
    spindle?: ElectronBridge;
  }
}

/** A failed call: `message` is the backend's sentence for the user. */
export class ApiCallError extends Error {
  constructor(
    readonly code: ApiError['code'] | 'DISCONNECTED',
    message: string,
  ) {
    super(message);
  }
}

export type ConnectionState = 'connecting' | 'open' | 'closed';

interface Pipe {
  send(req: WireRequest): boolean;
}

type Listener = (event: unknown) => void;

export class ApiClient implements SpindleApi {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly subs = new Map<number, { topic: string; params: unknown; listener: Listener }>();
  private pipe: Pipe | null = null;
  state: ConnectionState = 'connecting';
  private readonly stateListeners = new Set<(s: ConnectionState) => void>();

  /** Called by the transport once it can send. Re-sends every live subscription (after a reconnect). */
  attach(pipe: Pipe): void {
    this.pipe = pipe;
    this.setState('open');
    for (const [id, s] of this.subs) pipe.send({ kind: 'subscribe', id, topic: s.topic, params: s.params });
  }

  /** The transport is gone: calls in flight fail with a sentence, subscriptions wait for reconnect. */
  detach(state: ConnectionState = 'closed'): void {
    this.pipe = null;
    this.setState(state);
    for (const [, p] of this.pending) p.reject(new ApiCallError('DISCONNECTED', 'The connection to Spindle was lost; reconnecting.'));
    this.pending.clear();
  }

  receive(msg: WireMessage): void {
    if (msg.kind === 'event') {
      this.subs.get(msg.id)?.listener(msg.event);
      return;
    }
    const p = this.pending.get(msg.id);
    if (p) {
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new ApiCallError(msg.error.code, msg.error.message));
    } else if (!msg.ok && this.subs.has(msg.id)) {
      // A subscription the backend refused: report it once, keep it out of reconnects.
      this.subs.delete(msg.id);
      console.error(`spindle: subscription refused: ${msg.error.message}`);
    }
  }

  call<M extends MethodName>(method: M, params: Params<M>): Promise<Result<M>> {
    const id = this.nextId++;
    return new Promise<Result<M>>((resolve, reject) => {
      if (!this.pipe) return reject(new ApiCallError('DISCONNECTED', 'Spindle is not connected yet; try again in a moment.'));
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.pipe.send({ kind: 'call', id, method, params });
    });
  }

  subscribe<T extends TopicName>(topic: T, params: TopicParams<T>, listener: (event: TopicEvent<T>) => void): () => void {
    const id = this.nextId++;
    this.subs.set(id, { topic, params, listener: listener as Listener });
    this.pipe?.send({ kind: 'subscribe', id, topic, params });
    return () => {
      if (this.subs.delete(id)) this.pipe?.send({ kind: 'unsubscribe', id });
    };
  }

  onState(listener: (s: ConnectionState) => void): () => void {
    this.stateListeners.add(listener);
    listener(this.state);
    return () => this.stateListeners.delete(listener);
  }

  private setState(s: ConnectionState): void {
    this.state = s;
    for (const l of this.stateListeners) l(s);
  }
}

/** The serve-mode token from the page URL (`?token=…`). */
function pageToken(): string {
  return new URLSearchParams(location.search).get('token') ?? '';
}

function connectWebSocket(client: ApiClient): void {
  let delay = 250;
  const open = () => {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/api?token=${encodeURIComponent(pageToken())}`);
    ws.onopen = () => {
      delay = 250;
      client.attach({
        send: (req) => {
          if (ws.readyState !== WebSocket.OPEN) return false;
          ws.send(JSON.stringify(req));
          return true;
        },
      });
    };
    ws.onmessage = (e) => {
      if (typeof e.data === 'string') client.receive(JSON.parse(e.data) as WireMessage);
    };
    ws.onclose = () => {
      client.detach();
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 5000);
    };
  };
  open();
}

function connectIpc(client: ApiClient, bridge: ElectronBridge): void {
  bridge.onMessage((msg) => client.receive(msg));
  client.attach({
    send: (req) => {
      bridge.send(JSON.stringify(req));
      return true;
    },
  });
}

export const transport: 'ipc' | 'websocket' = typeof window !== 'undefined' && window.spindle ? 'ipc' : 'websocket';

export const api = new ApiClient();

/** Connects the shared client; main.ts calls it once. */
export function connect(): void {
  if (window.spindle) connectIpc(api, window.spindle);
  else connectWebSocket(api);
}

/** The native file dialog in Electron; null in serve mode (the UI then offers path entry). */
export const pickFile: ((o: FilePickOptions) => Promise<string | null>) | null =
  typeof window !== 'undefined' && window.spindle ? (o) => window.spindle!.pickFile(o) : null;

/** A WebSocket-like channel to a VM's display, for noVNC: a real WebSocket in serve mode,
 *  an IPC byte channel in Electron. */
export function vncTarget(vmId: string): string | VncChannel {
  if (!window.spindle) {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/vnc/${encodeURIComponent(vmId)}?token=${encodeURIComponent(pageToken())}`;
  }
  return new VncChannel(window.spindle, vmId);
}

/** The subset of WebSocket noVNC's Websock.attach() uses (send, close, binaryType, protocol,
 *  readyState, onopen, onmessage, onclose, onerror). */
export class VncChannel {
  binaryType = 'arraybuffer';
  protocol = '';
  readyState: number = 0;
  onopen: ((e: Event) => void) | null = null;
  onmessage: ((e: { data: ArrayBuffer }) => void) | null = null;
  onclose: ((e: { code: number; reason: string; wasClean: boolean }) => void) | null = null;
  onerror: ((e: Event) => void) | null = null;
  private channel = -1;

  constructor(
    private readonly bridge: ElectronBridge,
    vmId: string,
  ) {
    bridge
      .vncOpen(
        vmId,
        (bytes) => this.onmessage?.({ data: bytes.slice().buffer }),
        (reason) => {
          this.readyState = 3;
          this.onclose?.({ code: 1000, reason, wasClean: true });
        },
      )
      .then((ch) => {
        this.channel = ch;
        this.readyState = 1;
        this.onopen?.(new Event('open'));
      })
      .catch((err: Error) => {
        this.readyState = 3;
        this.onerror?.(new Event('error'));
        this.onclose?.({ code: 1011, reason: err.message, wasClean: false });
      });
  }

  send(data: ArrayBuffer | Uint8Array): void {
    if (this.readyState === 1) this.bridge.vncSend(this.channel, data instanceof Uint8Array ? data : new Uint8Array(data));
  }

  close(): void {
    if (this.readyState === 1) this.bridge.vncClose(this.channel);
    this.readyState = 3;
  }
}
