// The main thread's handle on one disk's IOThread. Control goes by message; counters are read
// straight from the SharedArrayBuffer the worker's engine writes. A worker that throws or dies
// becomes a 'failed' event with its reason: the main thread and every other disk go on.
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import { SpindleError } from '../errors.js';
import { DiskCounters, type CountersSnapshot } from '../block/stats.js';
import type { AioMode, CacheMode, NowaitMode } from '../block/modes.js';
import type { Command, DiskEvent, DiskSpec, ModeChange, SerializedError, WorkerMessage } from './messages.js';

export type { DiskSpec, DiskEvent, ModeChange } from './messages.js';

const revive = (e: SerializedError): SpindleError => new SpindleError(e.code, e.message, e.errno);

/** How long stop() waits for a worker to finish draining before it is terminated. */
const STOP_TIMEOUT_MS = 30_000;

type CommandBody = Command extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never;

export class DiskServer extends EventEmitter<{ event: [DiskEvent] }> {
  readonly spec: DiskSpec;
  readonly sizeBytes: number;
  readonly kind: 'file' | 'block';
  /** The IOThread's kernel thread id (its CPU time is /proc/self/task/<tid>/schedstat), null if unknown. */
  readonly threadTid: number | null;
  private modes: { aio: AioMode; cache: CacheMode; nowait: NowaitMode };
  private readonly counters: DiskCounters;
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve(): void; reject(e: Error): void }>();
  private nextId = 1;
  private failure: string | null = null;
  private readonly exited: Promise<number>;

  private constructor(spec: DiskSpec, worker: Worker, counters: DiskCounters, ready: Extract<WorkerMessage, { type: 'ready' }>) {
    super();
    this.spec = spec;
    this.worker = worker;
    this.counters = counters;
    this.sizeBytes = ready.sizeBytes;
    this.kind = ready.kind;
    this.threadTid = ready.tid;
    this.modes = { aio: ready.aio, cache: ready.cache, nowait: ready.nowait };
    this.exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.on('message', (m: WorkerMessage) => this.onMessage(m));
    worker.on('error', (err) => this.fail(`the disk's I/O thread failed: ${err.message}`));
    worker.on('exit', (code) => {
      if (!this.failure && this.waiting.size) this.fail(`the disk's I/O thread exited (code ${code})`);
      for (const w of this.waiting.values()) w.reject(new SpindleError('INTERNAL', this.failure ?? 'the disk has stopped'));
      this.waiting.clear();
    });
  }

  /** Starts the disk's IOThread: opens the disk, listens on the socket. Rejects with a SpindleError. */
  static start(spec: DiskSpec): Promise<DiskServer> {
    const counters = new DiskCounters();
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: { spec, counters: counters.buffer } });
    return new Promise((resolve, reject) => {
      const early: DiskEvent[] = [];
      const onMessage = (m: WorkerMessage): void => {
        if (m.type === 'event') early.push(m.event);
        else if (m.type === 'start-failed') {
          cleanup();
          reject(revive(m.error));
        } else if (m.type === 'ready') {
          cleanup();
          const server = new DiskServer(spec, worker, counters, m);
          // Events from before 'ready' (none in practice) are replayed once listeners can attach.
          queueMicrotask(() => early.forEach((e) => server.emit('event', e)));
          resolve(server);
        }
      };
      const onError = (err: Error): void => {
        cleanup();
        reject(new SpindleError('INTERNAL', `The disk's I/O thread failed while starting: ${err.message}`));
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new SpindleError('INTERNAL', `The disk's I/O thread exited while starting (code ${code}).`));
      };
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    });
  }

  get currentModes(): { aio: AioMode; cache: CacheMode; nowait: NowaitMode } {
    return { ...this.modes };
  }

  /** Why the worker died, or null while it is healthy. */
  get failed(): string | null {
    return this.failure;
  }

  private onMessage(m: WorkerMessage): void {
    if (m.type === 'event') {
      if (m.event.kind === 'modes') this.modes = { aio: m.event.aio, cache: m.event.cache, nowait: m.event.nowait };
      this.emit('event', m.event);
    } else if (m.type === 'reply') {
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (m.error) w?.reject(revive(m.error));
      else w?.resolve();
    }
  }

  private fail(reason: string): void {
    if (this.failure) return;
    this.failure = reason;
    this.emit('event', { kind: 'failed', reason });
  }

  private command(body: CommandBody): Promise<void> {
    if (this.failure) return Promise.reject(new SpindleError('INTERNAL', `This disk has stopped: ${this.failure}`));
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...body, id } as Command);
    });
  }

  /** Stops taking new requests and waits until none is in flight. */
  pause(): Promise<void> {
    return this.command({ op: 'pause' });
  }

  resume(): Promise<void> {
    return this.command({ op: 'resume' });
  }

  /** Changes aio, cache or nowait mode live: drain, reopen, swap the engine, resume. The guest sees no error. */
  reconfigure(change: ModeChange): Promise<void> {
    return this.command({ op: 'reconfigure', change });
  }

  /** Counters as the worker's engine wrote them (read from shared memory: no message). */
  stats(): CountersSnapshot {
    return this.counters.snapshot();
  }

  /** The compact summary `spindle export` prints on exit. */
  statsSummary(): Record<string, unknown> {
    return this.counters.summary();
  }

  /** Drains in-flight I/O, closes the socket, the disk and the thread. */
  async stop(): Promise<void> {
    if (!this.failure) {
      try {
        await this.command({ op: 'stop' });
      } catch {
        /* dying anyway: the exit below is what matters */
      }
    }
    const timer = setTimeout(() => void this.worker.terminate(), STOP_TIMEOUT_MS);
    try {
      if (this.failure) await this.worker.terminate();
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Names the one frontend process (QEMU's pid, known right after spawn) this disk serves; with
   * spec.awaitPeer nothing is accepted before this. Any other pid that connects is refused and logged.
   * Why no race: QEMU connects while realizing its vhost-user devices (before -S matters), but its
   * connection waits in the listen backlog, blocked on the GET_FEATURES reply, until this call;
   * SO_PEERCRED reports the pid that called connect(). QEMU's pid cannot be reused while it runs or
   * until Node reaps it, and the manager stops a VM's disks when its QEMU exits.
   */
  expectPeer(pid: number): Promise<void> {
    if (!Number.isInteger(pid) || pid <= 0) return Promise.reject(new SpindleError('INVALID_ARGUMENT', `Not a process id: ${pid}.`));
    return this.command({ op: 'expect-peer', pid });
  }

  /** Test hook: makes the worker throw (needs SPINDLE_TEST_HOOKS=1 in its environment). */
  crashForTest(): Promise<void> {
    return this.command({ op: 'crash-for-test' });
  }
}
