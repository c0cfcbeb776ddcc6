// One client connection's view of the API, shared by both transports: dispatches calls, keeps
// its subscriptions, and ends them all when the connection goes away (a closed window or tab
// must not leave stat samplers or console bridges running).
import { parseClientMessage, toWireError, type ServerMessage } from './wire.js';
import { SpindleError } from '../errors.js';

/** What a transport needs from the API router. */
export interface ApiHandler {
  call(method: string, params: unknown): Promise<unknown>;
  /** Starts a stream; `emit` may be called until the returned stop function runs or `end` is called. */
  subscribe(
    stream: string,
    params: unknown,
    emit: (event: unknown) => void,
    end: (err?: unknown) => void,
  ): Promise<() => void>;
}

export type Send = (msg: ServerMessage) => void;
/** A byte payload (console output); transports that can send it raw do so. */
export type SendBytes = (id: number, bytes: Uint8Array) => void;

/** Most subscriptions one connection may hold: a misbehaving client cannot pile up samplers. */
export const MAX_SUBSCRIPTIONS = 256;

export class ApiSession {
  private readonly subs = new Map<number, (() => void) | null>();
  private closed = false;

  constructor(
    private readonly handler: ApiHandler,
    private readonly send: Send,
    private readonly sendBytes?: SendBytes,
  ) {}

  /** Handles one raw text message; never throws. */
  receive(text: string): void {
    const m = parseClientMessage(text);
    if ('invalid' in m) {
      this.send({ t: 'error', id: m.id ?? -1, error: { code: 'INVALID_ARGUMENT', message: m.invalid } });
      return;
    }
    if (m.t === 'call') void this.call(m.id, m.method, m.params);
    else if (m.t === 'sub') void this.subscribe(m.id, m.stream, m.params);
    else this.unsubscribe(m.id);
  }

  private async call(id: number, method: string, params: unknown): Promise<void> {
    try {
      const result = await this.handler.call(method, params);
      if (!this.closed) this.send({ t: 'result', id, result: result ?? null });
    } catch (err) {
      if (!this.closed) this.send({ t: 'error', id, error: toWireError(err) });
    }
  }

  private async subscribe(id: number, stream: string, params: unknown): Promise<void> {
    if (this.subs.has(id)) {
      this.send({ t: 'end', id, error: toWireError(new SpindleError('INVALID_ARGUMENT', `Subscription ${id} is already open.`)) });
      return;
    }
    if (this.subs.size >= MAX_SUBSCRIPTIONS) {
      this.send({ t: 'end', id, error: toWireError(new SpindleError('INVALID_ARGUMENT', `This connection already has ${MAX_SUBSCRIPTIONS} open subscriptions; close some first.`)) });
      return;
    }
    this.subs.set(id, null); // reserved while the stream starts
    let ended = false;
    const emit = (event: unknown) => {
      if (ended || this.closed || !this.subs.has(id)) return;
      if (event instanceof Uint8Array && this.sendBytes) this.sendBytes(id, event);
      else this.send({ t: 'event', id, event });
    };
    const end = (err?: unknown) => {
      if (ended) return;
      ended = true;
      const had = this.subs.delete(id);
      if (had && !this.closed) this.send(err === undefined ? { t: 'end', id } : { t: 'end', id, error: toWireError(err) });
    };
    try {
      const stop = await this.handler.subscribe(stream, params, emit, end);
      if (ended || this.closed || !this.subs.has(id)) {
        stop(); // unsubscribed or closed while starting
        return;
      }
      this.subs.set(id, stop);
    } catch (err) {
      end(err);
    }
  }

  private unsubscribe(id: number): void {
    if (!this.subs.has(id)) return;
    const stop = this.subs.get(id);
    this.subs.delete(id);
    stop?.();
    this.send({ t: 'end', id });
  }

  get subscriptionCount(): number {
    return this.subs.size;
  }

  /** The connection is gone: stop every stream it held. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.subs.values()) stop?.();
    this.subs.clear();
  }
}
