// Thread CPU from /proc/self/task: a real worker thread that spins, found by its kernel tid.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import { within } from '../lib/wait.js';
import { threadCpuSeconds, IoUringWorkerCpu, IoThreadCpu } from '../../electron/host/proc/thread-cpu.js';
import { describeDiskEvent, effectOf } from '../../electron/host/vm/disk-events.js';

test('threadCpuSeconds follows one thread (not the process); a missing thread is null', async () => {
  const w = new Worker(
    `
    const { parentPort } = require('node:worker_threads');
    const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
    parentPort.postMessage(tid);
    // Spin until this thread has used 0.2 s of CPU by its own clock (however long a loaded machine
    // makes that take), so the reader has something to see.
    const cpu = () => { const f = require('node:fs').readFileSync('/proc/thread-self/stat', 'utf8').split(') ')[1].split(' '); return Number(f[11]) + Number(f[12]); };
    parentPort.on('message', () => { const start = cpu(); while (cpu() - start < 20); parentPort.postMessage('spun'); });
  `,
    { eval: true },
  );
  try {
    const [tid] = (await within(once(w, 'message'), { timeoutMs: 60_000, what: 'the worker to report its tid' })) as [number];
    assert.notEqual(tid, process.pid);
    const io = new IoThreadCpu(tid);
    const a = threadCpuSeconds(tid)!;
    const ioA = io.seconds()!;
    const mainA = threadCpuSeconds(process.pid)!;
    w.postMessage('spin');
    await within(once(w, 'message'), { timeoutMs: 120_000, what: 'the worker to spin for 20 ticks of CPU' });
    const b = threadCpuSeconds(tid)!;
    assert.ok(b - a >= 0.15, `the spinning thread gained its 0.2 s of CPU (${a} -> ${b})`);
    assert.ok(io.seconds()! - ioA > 0.05, 'IoThreadCpu reads the same thread by its tid');
    assert.ok(threadCpuSeconds(process.pid)! - mainA < b - a, 'the main thread, which waited, gained less');
  } finally {
    await w.terminate();
  }
  assert.equal(threadCpuSeconds(2 ** 22 + 4321), null);
  assert.equal(new IoUringWorkerCpu(2 ** 22 + 4321).seconds(), 0, 'no io_uring workers for a thread that has none');
  assert.equal(new IoThreadCpu(2 ** 22 + 4321).seconds(), null, 'a thread that is gone reads as null');
});

test('disk server events become lines; a malformed request and a dead IOThread mark the disk broken', () => {
  assert.deepEqual(describeDiskEvent({ kind: 'broken', queue: 0, reason: 'descriptor loop' }), {
    level: 'error',
    message: 'The guest sent a malformed request on queue 0; the queue stopped: descriptor loop',
  });
  assert.equal(effectOf({ kind: 'broken', queue: 0, reason: 'descriptor loop' }), 'broken');
  assert.equal(effectOf({ kind: 'failed', reason: 'boom' }), 'broken');
  assert.equal(
    describeDiskEvent({ kind: 'modes', aio: 'native', cache: 'none', nowait: 'off' })!.message,
    "Now serving with aio 'native', cache 'none', nowait 'off'.",
  );
  assert.equal(describeDiskEvent({ kind: 'nowait', direction: 'write', enabled: false, reason: 'writes bounce' })!.level, 'warning');
  assert.equal(describeDiskEvent({ kind: 'connected', pid: 42 })!.message, 'QEMU connected (pid 42).');
  // A restart is a warning, not a broken disk: the guest does not notice it.
  assert.equal(describeDiskEvent({ kind: 'restarting', reason: 'boom', attempt: 1 })!.level, 'warning');
  assert.equal(effectOf({ kind: 'restarting', reason: 'boom', attempt: 1 }), null);
  assert.match(describeDiskEvent({ kind: 'resubmitted', queue: 0, count: 3 })!.message, /Resubmitted 3 request/);
  assert.match(describeDiskEvent({ kind: 'restarted', restarts: 2 })!.message, /restarts so far: 2/);
  assert.equal(effectOf({ kind: 'restarted', restarts: 2 }), 'space-freed', 'writes held for space are back with QEMU');
  assert.equal(effectOf({ kind: 'fault', reason: 'The image file was deleted.' }), null, 'a host fault is a line, not a state');
  assert.equal(describeDiskEvent({ kind: 'space-wait', parked: 1, parkedBytes: 4096, freeBytes: 0, missingBytes: 4096 }), null);
});
