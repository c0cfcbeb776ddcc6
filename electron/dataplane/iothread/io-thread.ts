// A disk's IOThread: this worker_thread owns the vhost-user socket, the virtio-blk device, the
// block backend and its engine, so the data plane never runs on the thread that answers the UI.
// The main thread controls it with Command messages; counters live in a SharedArrayBuffer.
// worker.ts is the entry that runs it; tests run it from an entry of their own with hooks.
import { readlinkSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { SpindleError } from '../../shared/errors.js';
import type { BlockBackend } from '../block/backend.js';
import { fileOf, openFormat, type FormatDevice } from '../format/open-format.js';
import { DiskCounters } from '../block/stats.js';
import { ThrottledDevice } from '../block/throttle.js';
import type { NowaitEvent } from '../block/nowait-policy.js';
import { VirtioBlkDevice } from '../virtio/virtio-blk.js';
import { VhostUserServer } from '../vhost-user/server.js';
import { observeFds } from '../native/posix.js';
import { FdLedger } from './fd-ledger.js';
import { SpaceWatch } from './space-watch.js';
import type { Command, DiskEvent, RetryOutcome, SerializedError, WorkerData, WorkerMessage } from './messages.js';

export interface IoThreadHooks {
  /** The device exists and took the backend's completions; called before the socket listens.
   *  `backend` is the image file's BlockBackend (under a qcow2 driver for qcow2 disks). */
  deviceReady?(backend: BlockBackend, device: VirtioBlkDevice): void;
}

/** Serves the disk workerData names on this thread, commanded through parentPort. */
export function runIoThread(hooks: IoThreadHooks = {}): void {
  const port = parentPort!;
  const { spec, counters, fdLedger, failures } = workerData as WorkerData;
  const ledger = new FdLedger(fdLedger);
  // Every fd this thread opens or receives is in the ledger until closed, for the supervisor to
  // close if this thread dies.
  observeFds({ opened: (fd) => ledger.add(fd), closed: (fd) => ledger.remove(fd) });
  const post = (m: WorkerMessage): void => port.postMessage(m);
  const event = (e: DiskEvent): void => post({ type: 'event', event: e });

  /** This thread's kernel tid: /proc/thread-self links to <pid>/task/<tid> (Node has no gettid). */
  function threadTid(): number | null {
    try {
      const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
      return Number.isInteger(tid) && tid > 0 ? tid : null;
    } catch {
      return null;
    }
  }

  function serialize(err: unknown): SerializedError {
    if (err instanceof SpindleError) return { code: err.code, message: err.message, ...(err.errno ? { errno: err.errno } : {}) };
    return { code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) };
  }

  /** What the virtio device serves (raw: the file's BlockBackend; qcow2: the driver over it). */
  let disk: FormatDevice | null = null;
  /** The image file's BlockBackend: its engine, modes and counters. */
  let backend: BlockBackend | null = null;
  let server: VhostUserServer | null = null;
  let device: VirtioBlkDevice | null = null;
  let throttle: ThrottledDevice | null = null;
  let space: SpaceWatch | null = null;
  /** The only frontend pid this disk serves (SO_PEERCRED); null until known when spec.awaitPeer. */
  let expectedPeer: number | null = null;

  async function start(): Promise<void> {
    try {
      disk = await openFormat(spec.path, spec.format, {
        aio: spec.aio,
        cache: spec.cache,
        nowait: spec.nowait,
        readOnly: spec.readOnly,
        counters: new DiskCounters(counters),
        ...(spec.l2CacheBytes ? { l2CacheBytes: spec.l2CacheBytes } : {}),
      });
      backend = fileOf(disk);
      if (disk !== backend) disk.on('log', (line: string) => event({ kind: 'log', line }));
      backend.on('nowait', (e: NowaitEvent) => event({ kind: 'nowait', direction: e.direction, enabled: e.enabled, reason: e.message }));
      // The limits sit between the device and the disk (raw backend or the format driver on it).
      throttle = new ThrottledDevice(disk, spec.limits ?? {});
      device = new VirtioBlkDevice(throttle, {
        numQueues: spec.queues,
        serial: spec.serial,
        enospc: spec.enospc ?? 'stop',
        diskPath: spec.path,
        failureCounts: new Float64Array(failures),
      });
      // Parked writes: say so with what is missing, watch the filesystem, retry as space appears.
      const watch = new SpaceWatch(spec.path, backend.kind, device, (s) => event({ kind: 'space-wait', ...s }));
      space = watch;
      device.onNoSpace = (e) => event({ kind: 'no-space', retried: e.retried, sentence: e.sentence, ...watch.start() });
      device.onSpaceRecovered = (e) => {
        watch.stop();
        event({ kind: 'space-recovered', completed: e.completed, dropped: e.dropped, waitedMs: e.waitedMs });
      };
      hooks.deviceReady?.(backend, device);
      device.onResubmitted = (queue, count) => event({ kind: 'resubmitted', queue, count });
      expectedPeer = spec.peerPid ?? null;
      const checked = spec.peerPid !== undefined || spec.awaitPeer === true;
      server = VhostUserServer.listen({
        socketPath: spec.socketPath,
        device,
        ...(checked
          ? { acceptPeer: (p) => p.pid === expectedPeer && p.uid === process.getuid?.(), holdConnections: expectedPeer === null }
          : {}),
      });
      server.on('log', (line) => event({ kind: 'log', line }));
      server.on('connected', (peer) => event({ kind: 'connected', pid: peer?.pid ?? null }));
      server.on('disconnected', (reason) => event({ kind: 'disconnected', reason }));
      server.on('broken', (queue, reason) => event({ kind: 'broken', queue, reason }));
      const m = backend.currentModes;
      post({
        type: 'ready',
        sizeBytes: disk.sizeBytes,
        kind: backend.kind,
        aio: m.aio,
        cache: m.cache,
        nowait: m.nowait,
        tid: threadTid(),
      });
    } catch (err) {
      await (throttle ?? disk)?.close().catch(() => undefined);
      post({ type: 'start-failed', error: serialize(err) });
      port.close();
    }
  }

  async function run(cmd: Command): Promise<RetryOutcome | void> {
    switch (cmd.op) {
      case 'pause':
        server!.pause();
        await (throttle ?? disk)!.drain();
        return;
      case 'resume':
        server!.resume();
        return;
      case 'reconfigure': {
        await disk!.reconfigure(cmd.change);
        const m = backend!.currentModes;
        event({ kind: 'modes', aio: m.aio, cache: m.cache, nowait: m.nowait });
        return;
      }
      case 'stop':
        // Closing the server ends the connection: the device stops its queues and drains.
        space?.stop();
        await server?.close();
        await (throttle ?? disk)?.close();
        return;
      case 'resize': {
        // The format driver grows the guest-visible disk (qcow2: header and L1; raw: the file).
        await disk!.resize(cmd.sizeBytes);
        device!.setCapacity(disk!.sizeBytes);
        const notice = server!.configChanged();
        event({ kind: 'resized', sizeBytes: disk!.sizeBytes, ...(notice ? { guestNotice: notice } : {}) });
        return;
      }
      case 'expect-peer':
        expectedPeer = cmd.pid;
        server!.allowConnections();
        return;
      case 'limits':
        throttle!.setLimits(cmd.limits);
        return;
      case 'retry-parked':
        return space?.retry() ?? { retried: 0, parked: 0 };
    }
  }

  // Commands are handled one at a time, in order (a reconfigure never overlaps a stop).
  let chain: Promise<void> = Promise.resolve();
  port.on('message', (cmd: Command) => {
    chain = chain.then(async () => {
      try {
        const outcome = await run(cmd);
        post({ type: 'reply', id: cmd.id, ...(outcome ? { outcome } : {}) });
      } catch (err) {
        post({ type: 'reply', id: cmd.id, error: serialize(err) });
      }
      if (cmd.op === 'stop') port.close();
    });
  });

  void start();
}
