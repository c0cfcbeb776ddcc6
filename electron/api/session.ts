// One client connection's view of the API, shared by both transports: dispatches calls, keeps
// its subscriptions, and ends them all when the connection goes away (a closed window or tab
// must not leave stat listeners or console bridges behind).
import { parseClientMessage, type WireMessage } from './wire.js';
import { toApiError } from './errors.js';
import { SpindleError } from '../shared/errors.js';

/** The API as every transport calls it (the router implements it): the contract's SpindleApi
 *  without its generics. Errors are thrown; the transport turns them into wire errors with
 *  `toApiError` (errors.ts). */
export interface ApiHandler {
  call(method: string, params: unknown): Promise<unknown>;
  /** Throws (synchronously) when the topic or its params are invalid; returns the unsubscribe function. */
  subscribe(topic: string, params: unknown, listener: (event: unknown) => void): () => void;
}

export type Send = (msg: WireMessage) => void;

/** Most subscriptions one connection may hold: a misbehaving client cannot pile up listeners. */
export const MAX_SUBSCRIPTIONS = 256;

export class ApiSession {
  private readonly subs = new Map<number, () => void>();
  private closed = false;

  constructor(
    private readonly handler: ApiHandler,
    private readonly send: Send,
  ) {}

  /** Handles one raw text message; never throws. */
  receive(text: string): void {
    const m = parseClientMessage(text);
    if ('invalid' in m) return this.fail(m.id, new SpindleError('INVALID_ARGUMENT', m.invalid));
    if (m.kind === 'call') void this.call(m.id, m.method, m.params);
    else if (m.kind === 'subscribe') this.subscribe(m.id, m.topic, m.params);
    else this.unsubscribe(m.id);
  }

  private fail(id: number, err: unknown): void {
    if (!this.closed) this.send({ kind: 'result', id, ok: false, error: toApiError(err) });
  }

  private async call(id: number, method: string, params: unknown): Promise<void> {
    try {
      const result = await this.handler.call(method, params);
      if (!this.closed) this.send({ kind: 'result', id, ok: true, result: result ?? null });
    } catch (err) {
      this.fail(id, err);
    }
  }

  private subscribe(id: number, topic: string, params: unknown): void {
    if (this.subs.has(id)) return this.fail(id, new SpindleError('INVALID_ARGUMENT', `Subscription ${id} is already open.`));
    if (this.subs.size >= MAX_SUBSCRIPTIONS) {
      return this.fail(
        id,
        new SpindleError('INVALID_ARGUMENT', `This connection already has ${MAX_SUBSCRIPTIONS} open subscriptions; close some first.`),
      );
    }
    try {
      const stop = this.handler.subscribe(topic, params, (event) => {
        if (!this.closed && this.subs.has(id)) this.send({ kind: 'event', id, event });
      });
      this.subs.set(id, stop);
      this.send({ kind: 'result', id, ok: true, result: null });
    } catch (err) {
      this.fail(id, err);
    }
  }

  private unsubscribe(id: number): void {
    const stop = this.subs.get(id);
    this.subs.delete(id);
    stop?.();
  }

  get subscriptionCount(): number {
    return this.subs.size;
  }

  /** The connection is gone: stop every stream it held. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.subs.values()) stop();
    this.subs.clear();
  }
}
