// A vhost-user proxy for tests: listens where the frontend (QEMU) connects, opens a connection to
// the backend (`spindle export`) for each frontend connection, and passes every message and its
// fds through unchanged, both ways. A test arms it to run a hook right after the n-th message of
// the next frontend connection went through: that is how it kills the backend at an exact point
// of QEMU's (re)connect handshake, which a timer cannot hit (the handshake takes milliseconds).
// When either side closes, so does the other: the frontend sees the backend's death as its own.
// While the backend is down (down() until up()) nobody listens: the frontend's connects are
// refused, as they are by the socket of a killed backend.
import { unlinkSync } from 'node:fs';
import { posix, POLL_READABLE, closeQuietly, type FdWatch } from '../../electron/dataplane/native/posix.js';
import { Channel } from '../../electron/dataplane/vhost-user/channel.js';
import { requestName } from '../../electron/dataplane/vhost-user/protocol.js';

interface Pair {
  front: Channel;
  back: Channel;
  /** fds passed through: kept open until the pair closes (a Channel may still be sending them). */
  fds: number[];
  /** Messages counted toward the armed hook; -1 until the armed `from` message went through. */
  sent: number;
}

export class VhostUserProxy {
  private listenFd = -1;
  private watch: FdWatch | null = null;
  private pair: Pair | null = null;
  private armed: {
    n: number;
    from: string | null;
    hook: (request: string, backendPid: number | null) => void;
    settle: (request: string | null) => void;
  } | null = null;
  /** Frontend connections seen, and the requests of the current one (for diagnostics). */
  connections = 0;
  requests: string[] = [];

  constructor(
    readonly frontPath: string,
    readonly backPath: string,
  ) {
    this.up();
  }

  /** The backend listens (again): accept frontends. */
  up(): void {
    if (this.listenFd >= 0) return;
    try {
      unlinkSync(this.frontPath);
    } catch {
      /* first time */
    }
    this.listenFd = posix.listenUnix(this.frontPath);
    this.watch = posix.watchFd(this.listenFd, POLL_READABLE, () => this.accept());
  }

  /** The backend died: end the current connection and refuse new ones until up(). */
  down(): void {
    this.watch?.stop();
    this.watch = null;
    closeQuietly(this.listenFd);
    this.listenFd = -1;
    this.endPair();
  }

  /** Closing one side ends the pair (its onClose closes the other and the fds). */
  private endPair(): void {
    this.pair?.front.close();
  }

  /**
   * Runs `hook` (synchronously, before any later message is passed on) right after the `n`-th
   * message (1-based) of the next frontend connection went to the backend; with `from`, the `n`-th
   * message after the first one named `from` (n = 0: right after that one). Resolves with that
   * message's name, or null when the connection ended before it. `backendPid` is the process
   * listening on the backend socket (SO_PEERCRED), null if unknown.
   */
  armAfter(n: number, hook: (request: string, backendPid: number | null) => void, from?: string): Promise<string | null> {
    return new Promise((settle) => (this.armed = { n, from: from ?? null, hook, settle }));
  }

  private accept(): void {
    while (this.listenFd >= 0) {
      const fd = posix.acceptUnix(this.listenFd);
      if (fd < 0) return;
      if (this.pair) {
        closeQuietly(fd);
        continue;
      }
      let backFd: number;
      try {
        backFd = posix.connectUnix(this.backPath);
      } catch {
        // The backend went away without down(): the frontend sees a closed connection.
        closeQuietly(fd);
        continue;
      }
      let backendPid: number | null = null;
      try {
        backendPid = posix.peerCred(backFd).pid;
      } catch {
        /* only for the hook */
      }
      this.connections++;
      this.requests = [];
      const armed = this.armed;
      this.armed = null;
      const end = (): void => {
        if (this.pair !== pair) return;
        this.pair = null;
        armed?.settle(null);
        pair.front.close();
        pair.back.close();
        pair.fds.forEach(closeQuietly);
      };
      const pair: Pair = {
        front: new Channel(fd, {
          onMessage: (m) => {
            pair.fds.push(...m.fds);
            pair.back.send(m.request, m.flags, m.payload, m.fds);
            const name = requestName(m.request);
            this.requests.push(name);
            if (!armed) return;
            // Counting starts at the first message, or after the one named `from`.
            if (pair.sent < 0) {
              if (name === armed.from) pair.sent = 0;
            } else pair.sent++;
            if (pair.sent === armed.n) {
              armed.settle(name);
              armed.hook(name, backendPid);
            }
          },
          onClose: end,
        }),
        back: new Channel(backFd, {
          onMessage: (m) => {
            pair.fds.push(...m.fds);
            pair.front.send(m.request, m.flags, m.payload, m.fds);
          },
          onClose: end,
        }),
        fds: [],
        sent: armed?.from ? -1 : 0,
      };
      this.pair = pair;
    }
  }

  close(): void {
    this.down();
    try {
      unlinkSync(this.frontPath);
    } catch {
      /* gone */
    }
  }
}
