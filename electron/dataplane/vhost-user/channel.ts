// One vhost-user connection: a non-blocking unix socket watched in this thread's event loop,
// delivering whole messages in order and sending replies without ever blocking the thread
// (a peer that stops reading fills our queue, not our thread).
import { posix, POLL_READABLE, POLL_WRITABLE, closeQuietly, type FdWatch } from '../native/posix.js';
import { encodeMessage } from './codec.js';
import { MessageReader } from './reader.js';
import type { Message } from './protocol.js';

interface Outgoing {
  bytes: Uint8Array;
  sent: number;
  fds: readonly number[];
}

export interface ChannelHandlers {
  onMessage(msg: Message): void;
  /** Called once; reason is null when the peer closed cleanly. */
  onClose(reason: string | null): void;
}

/** Unsent bytes beyond which a peer that does not read is dropped. */
const MAX_QUEUED_BYTES = 1 << 20;

export class Channel {
  private readonly reader: MessageReader;
  private readWatch: FdWatch | null;
  private writeWatch: FdWatch | null = null;
  private readonly outgoing: Outgoing[] = [];
  private queuedBytes = 0;
  private closed = false;

  constructor(
    readonly fd: number,
    private readonly handlers: ChannelHandlers,
  ) {
    this.reader = new MessageReader((buf, off, len) => posix.recvMsg(fd, buf, off, len));
    this.readWatch = posix.watchFd(fd, POLL_READABLE, (_ev, _v, error) => {
      if (error !== undefined) this.close(`the socket failed (errno ${-error})`);
      else this.pump();
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private pump(): void {
    while (!this.closed) {
      let msg;
      try {
        msg = this.reader.next();
      } catch (err) {
        this.close((err as Error).message);
        return;
      }
      if (msg === null) return;
      if (msg === 'eof') {
        this.close(null);
        return;
      }
      this.handlers.onMessage(msg);
    }
  }

  send(request: number, flags: number, payload?: Uint8Array, fds: readonly number[] = []): void {
    if (this.closed) return;
    const bytes = encodeMessage(request, flags, payload);
    this.outgoing.push({ bytes, sent: 0, fds });
    this.queuedBytes += bytes.length;
    this.flush();
  }

  private flush(): void {
    while (!this.closed && this.outgoing.length) {
      const head = this.outgoing[0]!;
      let n: number;
      try {
        n = posix.sendMsg(this.fd, head.bytes, head.sent, head.bytes.length - head.sent, head.sent === 0 ? head.fds : undefined);
      } catch (err) {
        this.close(`sending failed: ${(err as Error).message}`);
        return;
      }
      if (n < 0) {
        if (this.queuedBytes > MAX_QUEUED_BYTES) {
          this.close('the peer stopped reading its socket');
          return;
        }
        this.writeWatch ??= posix.watchFd(this.fd, POLL_WRITABLE, () => this.flush());
        return;
      }
      head.sent += n;
      this.queuedBytes -= n;
      if (head.sent === head.bytes.length) this.outgoing.shift();
    }
    this.writeWatch?.stop();
    this.writeWatch = null;
  }

  /** Idempotent. Closes the socket and any fds of a partly received message. */
  close(reason: string | null = null): void {
    if (this.closed) return;
    this.closed = true;
    this.readWatch?.stop();
    this.readWatch = null;
    this.writeWatch?.stop();
    this.writeWatch = null;
    this.reader.discard();
    this.outgoing.length = 0;
    closeQuietly(this.fd);
    this.handlers.onClose(reason);
  }
}
