// The main thread's handle on one disk's IOThread. Control goes by message; counters are read
// straight from the SharedArrayBuffer the worker's engine writes. A worker that throws or dies
// becomes a 'failed' event with its reason: the main thread and every other disk go on.
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import { SpindleError } from '../../shared/errors.js';
import { DiskCounters, DIRECTIONS, type CountersSnapshot, type Direction } from '../../dataplane/block/stats.js';
import type { AioMode, CacheMode, NowaitMode } from '../../shared/modes.js';
import type { IoLimits } from '../../shared/limits.js';
import { FdLedger } from '../../dataplane/iothread/fd-ledger.js';
import {
  FAILURE_SLOTS,
  type Command,
  type DiskEvent,
  type DiskSpec,
  type ModeChange,
  type RetryOutcome,
  type SerializedError,
  type WorkerData,
  type WorkerMessage,
} from '../../dataplane/iothread/messages.js';

export type { DiskSpec, DiskEvent, ModeChange, RetryOutcome, SpaceStatus } from '../../dataplane/iothread/messages.js';

const revive = (e: SerializedError): SpindleError => new SpindleError(e.code, e.message, e.errno);

/** How long stop() waits for a worker to finish draining before it is terminated. */
const STOP_TIMEOUT_MS = 30_000;

type CommandBody = Command extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never;

export interface RestartPolicy {
  /** Restart the worker when it dies unexpectedly (default true). */
  enabled: boolean;
  /** Give up (a 'failed' event) after this many restarts within `windowMs` (a crash loop). */
  maxRestarts: number;
  windowMs: number;
}

const DEFAULT_RESTART: RestartPolicy = { enabled: true, maxRestarts: 5, windowMs: 60_000 };

type Ready = Extract<WorkerMessage, { type: 'ready' }>;

/** The module a disk's IOThread runs. */
let ioThreadEntry = new URL('../../dataplane/iothread/worker.js', import.meta.url);

/** Runs every IOThread started from now on from `entry` instead: tests use an entry that wraps
 *  runIoThread (dataplane/iothread/io-thread.ts) with hooks, see tests/lib/test-io-thread.ts. */
export function setIoThreadEntry(entry: URL): void {
  ioThreadEntry = entry;
}

/** Starts one worker for `spec`; resolves once it listens, rejects with a SpindleError. */
function spawnWorker(
  spec: DiskSpec,
  counters: DiskCounters,
  ledger: FdLedger,
  failures: SharedArrayBuffer,
): Promise<{ worker: Worker; ready: Ready; early: DiskEvent[] }> {
  const worker = new Worker(ioThreadEntry, {
    workerData: { spec, counters: counters.buffer, fdLedger: ledger.buffer, failures } satisfies WorkerData,
  });
  return new Promise((resolve, reject) => {
    const early: DiskEvent[] = [];
    const onMessage = (m: WorkerMessage): void => {
      if (m.type === 'event') early.push(m.event);
      else if (m.type === 'start-failed') {
        cleanup();
        reject(revive(m.error));
      } else if (m.type === 'ready') {
        cleanup();
        resolve({ worker, ready: m, early });
      }
    };
    const onError = (err: Error): void => {
      cleanup();
      ledger.closeLeftovers();
      reject(new SpindleError('INTERNAL', `The disk's I/O thread failed while starting: ${err.message}`));
    };
    const onExit = (code: number): void => {
      cleanup();
      ledger.closeLeftovers();
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

/**
 * Supervises one disk's IOThread. When the worker dies unexpectedly (a bug, an exception in the
 * data plane) the fds it left open are closed (QEMU sees the disconnect), a new worker starts
 * with the same spec on the same socket and counters, and QEMU (reconnect=1) hands it the
 * inflight region it kept, from which the new device resubmits what was in flight: the guest sees
 * a pause, not an error. The inflight memfd is QEMU's to keep across backend restarts (it got it
 * from GET_INFLIGHT_FD and sends it back with SET_INFLIGHT_FD), so nothing of it needs to live here.
 */
export class DiskServer extends EventEmitter<{ event: [DiskEvent] }> {
  readonly spec: DiskSpec;
  /** The disk's size as served; grows with resize(). */
  sizeBytes: number;
  readonly kind: 'file' | 'block';
  /** The IOThread's kernel thread id (its CPU time is /proc/self/task/<tid>/schedstat), null if
   *  unknown; a restarted IOThread has a new one. */
  threadTid: number | null;
  /** The frontend pid named by expectPeer(): a restarted IOThread must accept QEMU's reconnect. */
  private peerPid: number | null = null;
  private modes: { aio: AioMode; cache: CacheMode; nowait: NowaitMode };
  /** The limits it serves with (a live change survives a restart). */
  private limits: IoLimits;
  private readonly counters: DiskCounters;
  private readonly ledger: FdLedger;
  /** Per BlockOp, requests the guest got back as failed (written by the worker's device). */
  private readonly failures: Float64Array;
  private readonly policy: RestartPolicy;
  private worker!: Worker;
  /** The current worker has exited: a command posted to it would never be answered. */
  private workerExited = false;
  private readonly waiting = new Map<number, { resolve(outcome?: RetryOutcome): void; reject(e: Error): void }>();
  private nextId = 1;
  private failure: string | null = null;
  /** Set while a dead worker is being replaced: commands are refused meanwhile. */
  private restarting: Promise<void> | null = null;
  private stopping = false;
  private exited!: Promise<number>;
  private restartTimes: number[] = [];
  private restartCount = 0;
  private resubmittedCount = 0;

  private constructor(
    spec: DiskSpec,
    counters: DiskCounters,
    ledger: FdLedger,
    failures: Float64Array,
    policy: RestartPolicy,
    first: { worker: Worker; ready: Ready },
  ) {
    super();
    this.spec = spec;
    this.limits = spec.limits ?? {};
    this.counters = counters;
    this.ledger = ledger;
    this.failures = failures;
    this.policy = policy;
    this.sizeBytes = first.ready.sizeBytes;
    this.kind = first.ready.kind;
    this.threadTid = first.ready.tid;
    this.modes = { aio: first.ready.aio, cache: first.ready.cache, nowait: first.ready.nowait };
    this.attach(first.worker);
  }

  /** Starts the disk's IOThread: opens the disk, listens on the socket. Rejects with a SpindleError. */
  static async start(spec: DiskSpec, restart: Partial<RestartPolicy> = {}): Promise<DiskServer> {
    const counters = new DiskCounters();
    const ledger = new FdLedger();
    const failures = new Float64Array(new SharedArrayBuffer(FAILURE_SLOTS * 8));
    const first = await spawnWorker(spec, counters, ledger, failures.buffer as SharedArrayBuffer);
    const server = new DiskServer(spec, counters, ledger, failures, { ...DEFAULT_RESTART, ...restart }, first);
    // Events from before 'ready' (none in practice) are replayed once listeners can attach.
    queueMicrotask(() => first.early.forEach((e) => server.onEvent(e)));
    return server;
  }

  private attach(worker: Worker): void {
    this.worker = worker;
    this.workerExited = false;
    let crash: string | null = null;
    this.exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.on('message', (m: WorkerMessage) => {
      if (this.worker === worker) this.onMessage(m);
    });
    worker.on('error', (err) => {
      crash ??= `the disk's I/O thread failed: ${err.message}`;
    });
    worker.on('exit', (code) => {
      if (this.worker !== worker) return;
      this.workerExited = true;
      const reason = crash ?? `the disk's I/O thread exited (code ${code})`;
      const unexpected = !this.stopping;
      for (const w of this.waiting.values()) w.reject(new SpindleError('INTERNAL', `This disk's I/O thread stopped: ${reason}`));
      this.waiting.clear();
      // Whatever it was, the thread is gone: what it left open must not keep QEMU attached.
      this.ledger.closeLeftovers();
      if (!unexpected) return;
      if (this.policy.enabled) void this.restart(reason);
      else this.fail(reason);
    });
  }

  private async restart(reason: string): Promise<void> {
    const now = Date.now();
    this.restartTimes = this.restartTimes.filter((t) => now - t < this.policy.windowMs);
    if (this.restartTimes.length >= this.policy.maxRestarts) {
      this.fail(
        `${reason}; it was restarted ${this.restartTimes.length} times within ${Math.round(this.policy.windowMs / 1000)} s, so it stays stopped`,
      );
      return;
    }
    this.restartTimes.push(now);
    let done!: () => void;
    // Set before the event: a listener that calls stop() at once must wait for this restart too.
    this.restarting = new Promise((r) => (done = r));
    this.emit('event', { kind: 'restarting', reason, attempt: this.restartTimes.length });
    try {
      // The modes it served with (a live switch survives the crash) and the frontend it served.
      const spec = { ...this.spec, ...this.modes, limits: this.limits, ...(this.peerPid === null ? {} : { peerPid: this.peerPid }) };
      const next = await spawnWorker(spec, this.counters, this.ledger, this.failures.buffer as SharedArrayBuffer);
      if (this.stopping) {
        await next.worker.terminate();
        this.ledger.closeLeftovers();
        return;
      }
      this.attach(next.worker);
      this.threadTid = next.ready.tid;
      this.restartCount++;
      next.early.forEach((e) => this.onEvent(e));
      this.modes = { aio: next.ready.aio, cache: next.ready.cache, nowait: next.ready.nowait };
      this.emit('event', { kind: 'restarted', restarts: this.restartCount });
    } catch (err) {
      this.fail(`${reason}; restarting it failed: ${(err as Error).message}`);
    } finally {
      this.restarting = null;
      done();
    }
  }

  /** Restarts survived and requests resubmitted from inflight regions since start. */
  get recovery(): { restarts: number; resubmitted: number } {
    return { restarts: this.restartCount, resubmitted: this.resubmittedCount };
  }

  get currentModes(): { aio: AioMode; cache: CacheMode; nowait: NowaitMode } {
    return { ...this.modes };
  }

  /** Why the worker died, or null while it is healthy. */
  get failed(): string | null {
    return this.failure;
  }

  private onEvent(e: DiskEvent): void {
    if (e.kind === 'modes') this.modes = { aio: e.aio, cache: e.cache, nowait: e.nowait };
    if (e.kind === 'resubmitted') this.resubmittedCount += e.count;
    this.emit('event', e);
  }

  private onMessage(m: WorkerMessage): void {
    if (m.type === 'event') this.onEvent(m.event);
    else if (m.type === 'reply') {
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (m.error) w?.reject(revive(m.error));
      else w?.resolve(m.outcome);
    }
  }

  private fail(reason: string): void {
    if (this.failure) return;
    this.failure = reason;
    this.emit('event', { kind: 'failed', reason });
  }

  private command(body: CommandBody): Promise<RetryOutcome | undefined> {
    if (this.failure) return Promise.reject(new SpindleError('INTERNAL', `This disk has stopped: ${this.failure}`));
    if (this.restarting)
      return Promise.reject(new SpindleError('INTERNAL', "This disk's I/O thread is restarting after a crash; try again in a moment."));
    // A stop() during a restart terminates the new worker before it is attached: the current one
    // is the dead one, and a message to it would wait forever.
    if (this.workerExited) return Promise.reject(new SpindleError('INTERNAL', "This disk's I/O thread has stopped."));
    const id = this.nextId++;
    return new Promise<RetryOutcome | undefined>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...body, id } as Command);
    });
  }

  /** Stops taking new requests and waits until none is in flight. */
  async pause(): Promise<void> {
    await this.command({ op: 'pause' });
  }

  async resume(): Promise<void> {
    await this.command({ op: 'resume' });
  }

  /** Changes aio, cache or nowait mode live: drain, reopen, swap the engine, resume. The guest sees no error. */
  async reconfigure(change: ModeChange): Promise<void> {
    await this.command({ op: 'reconfigure', change });
  }

  /** Grows the disk live (file: ftruncate; block device: what it has now) and tells the guest.
   *  Shrinking is refused with a sentence. */
  async resize(sizeBytes: number): Promise<void> {
    await this.command({ op: 'resize', sizeBytes });
    this.sizeBytes = sizeBytes;
  }

  /** Changes the disk's I/O limits live; a restarted worker keeps them. */
  async setLimits(limits: IoLimits): Promise<void> {
    await this.command({ op: 'limits', limits });
    this.limits = limits;
  }

  /** Counters as the worker's engine wrote them (read from shared memory: no message). */
  stats(): CountersSnapshot {
    return this.counters.snapshot();
  }

  /** The compact summary `spindle export` prints on exit. */
  statsSummary(): Record<string, unknown> {
    return { ...this.counters.summary(), ...this.recovery };
  }

  /** Set between detach() and reattach(): resolves the gap for commands and stop(). */
  private detached: (() => void) | null = null;

  /**
   * Lets go of the image under a connected guest (an internal qcow2 snapshot by qemu-img runs
   * meanwhile): drains, stops this IOThread (its fds and image locks go; QEMU keeps its inflight
   * region and reconnects, reconnect=1). reattach() starts a new IOThread on the same socket with
   * the same modes and peer, as a restart after a crash does.
   */
  async detach(): Promise<void> {
    if (this.stopping || this.detached) throw new SpindleError('CONFLICT', 'This disk is stopping or already released.');
    await this.pause(); // refuses while failed or restarting; waits until nothing is in flight
    this.stopping = true; // the worker's exit below is expected
    try {
      await this.command({ op: 'stop' });
    } catch {
      /* the exit is what matters */
    }
    await this.exited;
    this.ledger.closeLeftovers();
    this.restarting = new Promise((r) => (this.detached = r)); // commands and stop() wait out the gap
  }

  /** Serves the image again after detach(); a new IOThread that cannot start leaves the disk failed, with the reason. */
  async reattach(): Promise<void> {
    const done = this.detached;
    if (!done) return;
    try {
      const spec = { ...this.spec, ...this.modes, ...(this.peerPid === null ? {} : { peerPid: this.peerPid }) };
      const next = await spawnWorker(spec, this.counters, this.ledger, this.failures.buffer as SharedArrayBuffer);
      this.stopping = false;
      this.attach(next.worker);
      this.threadTid = next.ready.tid;
      next.early.forEach((e) => this.onEvent(e));
      this.modes = { aio: next.ready.aio, cache: next.ready.cache, nowait: next.ready.nowait };
    } catch (err) {
      this.stopping = false;
      this.fail(`reopening it after it was released failed: ${(err as Error).message}`);
    } finally {
      this.detached = null;
      this.restarting = null;
      done();
    }
  }

  /** Drains in-flight I/O, closes the socket, the disk and the thread. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.restarting;
    // One deadline for the whole stop: a worker that neither answers nor exits is terminated.
    const timer = setTimeout(() => {
      this.emit('event', { kind: 'log', line: `the disk's I/O thread did not stop within ${STOP_TIMEOUT_MS / 1000} s; terminating it` });
      for (const w of this.waiting.values()) w.reject(new SpindleError('INTERNAL', 'the disk did not stop in time'));
      this.waiting.clear();
      void this.worker.terminate();
    }, STOP_TIMEOUT_MS);
    if (!this.failure) {
      try {
        await this.command({ op: 'stop' });
      } catch {
        /* dying anyway: the exit below is what matters */
      }
    }
    try {
      if (this.failure) await this.worker.terminate();
      await this.exited;
    } finally {
      clearTimeout(timer);
      this.ledger.closeLeftovers();
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
  async expectPeer(pid: number): Promise<void> {
    if (!Number.isInteger(pid) || pid <= 0) throw new SpindleError('INVALID_ARGUMENT', `Not a process id: ${pid}.`);
    this.peerPid = pid;
    await this.command({ op: 'expect-peer', pid });
  }

  /** enospc 'stop': retries the writes parked for lack of space now (the IOThread also does by
   *  itself as free space grows); resolves once they are written or parked again, with how many
   *  still wait. A write that still finds no space parks again, without an error for the guest. */
  async retryParked(): Promise<RetryOutcome> {
    return (await this.command({ op: 'retry-parked' })) ?? { retried: 0, parked: 0 };
  }

  /** Per direction, requests the guest got back as failed since start (parked ones are not failed). */
  failedRequests(): Record<Direction, number> {
    return Object.fromEntries(DIRECTIONS.map((d, i) => [d, this.failures[i]!])) as Record<Direction, number>;
  }
}
