// Reassembles vhost-user messages from a non-blocking stream socket.
//
// Each recvmsg asks for no more than the rest of the current message, so the fds the kernel
// hands over always belong to that message (Linux attaches SCM_RIGHTS to the first byte of the
// sendmsg they came with and never reads past the range asked for).
import { HEADER_SIZE, type Message } from './protocol.js';
import { ProtocolError, parseHeader } from './codec.js';
import { closeQuietly, type ReceivedMessage } from '../native/posix.js';

/** recvmsg into buffer[offset, offset+length): null when nothing is pending, bytes 0 at end of stream. */
export type Receive = (buffer: Uint8Array, offset: number, length: number) => ReceivedMessage | null;

export class MessageReader {
  private readonly header = new Uint8Array(HEADER_SIZE);
  private have = 0;
  private request = 0;
  private flags = 0;
  private payload: Uint8Array | null = null;
  private fds: number[] = [];

  constructor(private readonly receive: Receive) {}

  /**
   * The next complete message, null if the rest has not arrived yet, or 'eof' when the peer
   * closed. Throws ProtocolError on a header no vhost-user peer would send (the stream cannot
   * be resynchronised after that: close the connection).
   */
  next(): Message | null | 'eof' {
    for (;;) {
      const inHeader = this.payload === null;
      const target = inHeader ? this.header : this.payload!;
      const offset = inHeader ? this.have : this.have - HEADER_SIZE;
      if (offset < target.length) {
        const got = this.receive(target, offset, target.length - offset);
        if (got === null) return null;
        this.fds.push(...got.fds);
        if (got.bytes === 0) {
          this.discard();
          return 'eof';
        }
        this.have += got.bytes;
        if (this.have - (inHeader ? 0 : HEADER_SIZE) < target.length) continue;
      }
      if (inHeader) {
        let h;
        try {
          h = parseHeader(this.header);
        } catch (err) {
          this.discard();
          throw err;
        }
        this.request = h.request;
        this.flags = h.flags;
        this.payload = new Uint8Array(h.size);
        if (h.size > 0) continue;
      }
      const msg: Message = { request: this.request, flags: this.flags, payload: this.payload!, fds: this.fds };
      this.have = 0;
      this.payload = null;
      this.fds = [];
      return msg;
    }
  }

  /** Closes fds of a partly received message (on close or error). */
  discard(): void {
    this.fds.forEach(closeQuietly);
    this.fds = [];
    this.payload = null;
    this.have = 0;
  }
}

export { ProtocolError };
