// A small QMP client (QEMU Machine Protocol) over a unix socket: greeting, qmp_capabilities,
// `execute` with ids, and asynchronous events. QEMU's output is trusted more than a guest's, but
// it is still parsed defensively: a malformed line or an oversized message ends the connection
// with a clear error instead of growing memory or throwing from a socket callback.
import { createConnection, type Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import { SpindleError } from '../../shared/errors.js';

/** Longest line accepted from QEMU (query replies are a few KiB; 8 MiB is far beyond any). */
export const QMP_MAX_LINE = 8 << 20;

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** Splits a byte stream into JSON objects, one per line (QMP ends each with \r\n). */
export class QmpFramer {
  private pending = '';
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });

  constructor(private readonly maxLine = QMP_MAX_LINE) {}

  /** Returns the complete messages in `chunk` (plus earlier leftovers); throws SpindleError on bad input. */
  push(chunk: Uint8Array): Record<string, unknown>[] {
    let text: string;
    try {
      text = this.decoder.decode(chunk, { stream: true });
    } catch {
      throw new SpindleError('PROTOCOL_ERROR', 'QEMU sent bytes on its control socket that are not UTF-8.');
    }
    this.pending += text;
    const out: Record<string, unknown>[] = [];
    let nl: number;
    while ((nl = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, nl).trim();
      this.pending = this.pending.slice(nl + 1);
      if (!line) continue;
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        throw new SpindleError('PROTOCOL_ERROR', `QEMU sent a control message that is not JSON: ${line.slice(0, 80)}`);
      }
      if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
        throw new SpindleError('PROTOCOL_ERROR', `QEMU sent a control message that is not an object: ${line.slice(0, 80)}`);
      }
      out.push(msg as Record<string, unknown>);
    }
    if (this.pending.length > this.maxLine) {
      throw new SpindleError('PROTOCOL_ERROR', `QEMU sent a control message longer than ${this.maxLine} bytes.`);
    }
    return out;
  }
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/**
 * Events: 'event' (QmpEvent), 'close' (Error | undefined: why, if not closed by us).
 */
export class QmpClient extends EventEmitter {
  private readonly framer = new QmpFramer();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed: Error | null = null;
  greeting: Record<string, unknown> | null = null;

  private constructor(private readonly socket: Socket) {
    super();
  }

  /** Connects, reads the greeting and enters command mode. */
  static async connect(path: string, opts: { timeoutMs?: number } = {}): Promise<QmpClient> {
    const socket = createConnection(path);
    const client = new QmpClient(socket);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new SpindleError('QEMU_FAILED', `QEMU did not answer on its control socket ${path} within ${timeoutMs / 1000} s.`));
      }, timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(
          err instanceof SpindleError
            ? err
            : new SpindleError('QEMU_FAILED', `Cannot connect to QEMU's control socket ${path}: ${err.message}.`),
        );
      };
      socket.once('error', fail);
      client.once('greeting', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        resolve();
      });
      client.once('close', (why?: Error) =>
        fail(why ?? new SpindleError('QEMU_FAILED', `QEMU closed its control socket ${path} before greeting.`)),
      );
      client.attach();
    });
    await client.execute('qmp_capabilities');
    return client;
  }

  private attach(): void {
    this.socket.on('data', (chunk: Buffer) => {
      let messages: Record<string, unknown>[];
      try {
        messages = this.framer.push(chunk);
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      for (const msg of messages) this.dispatch(msg);
    });
    this.socket.on('error', (err) => this.fail(new SpindleError('QEMU_FAILED', `QEMU's control socket failed: ${err.message}.`)));
    this.socket.on('close', () => this.fail(new SpindleError('QEMU_FAILED', 'QEMU closed its control socket.')));
  }

  private dispatch(msg: Record<string, unknown>): void {
    if ('QMP' in msg) {
      this.greeting = msg;
      this.emit('greeting', msg);
      return;
    }
    if (typeof msg.event === 'string') {
      const data = (typeof msg.data === 'object' && msg.data !== null ? msg.data : {}) as Record<string, unknown>;
      this.emit('event', { event: msg.event, data, timestamp: msg.timestamp } as QmpEvent);
      return;
    }
    const id = msg.id;
    const p = typeof id === 'number' ? this.pending.get(id) : undefined;
    if (!p) return; // a reply to nothing we sent: ignore rather than trust it
    this.pending.delete(id as number);
    if ('return' in msg) {
      p.resolve(msg.return);
    } else if (typeof msg.error === 'object' && msg.error !== null) {
      const e = msg.error as { class?: unknown; desc?: unknown };
      const err = new SpindleError(
        'QEMU_FAILED',
        `QEMU refused '${p.command}': ${typeof e.desc === 'string' ? e.desc : 'no reason given'}.`,
      );
      (err as SpindleError & { qmpClass?: string }).qmpClass = typeof e.class === 'string' ? e.class : undefined;
      p.reject(err);
    } else {
      p.reject(new SpindleError('PROTOCOL_ERROR', `QEMU answered '${p.command}' with neither a result nor an error.`));
    }
  }

  private fail(why: Error): void {
    if (this.closed) return;
    this.closed = why;
    this.socket.destroy();
    for (const p of this.pending.values()) p.reject(why);
    this.pending.clear();
    this.emit('close', why);
  }

  get isOpen(): boolean {
    return this.closed === null;
  }

  /** Runs a QMP command; rejects with SpindleError('QEMU_FAILED') carrying QEMU's description. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }) + '\n');
    });
  }

  /** Resolves with the first event named `name` whose data satisfies `match`, or rejects on timeout/close. */
  waitEvent(name: string, match: (data: Record<string, unknown>) => boolean = () => true, timeoutMs = 30_000): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
      };
      const onEvent = (ev: QmpEvent) => {
        if (ev.event === name && match(ev.data)) {
          cleanup();
          resolve(ev);
        }
      };
      const onClose = (why?: Error) => {
        cleanup();
        reject(why ?? new SpindleError('QEMU_FAILED', 'QEMU closed its control socket.'));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new SpindleError('QEMU_FAILED', `QEMU did not report ${name} within ${Math.round(timeoutMs / 1000)} s.`));
      }, timeoutMs);
      this.on('event', onEvent);
      this.once('close', onClose);
    });
  }

  close(): void {
    this.fail(new SpindleError('QEMU_FAILED', 'The control connection was closed.'));
  }
}
