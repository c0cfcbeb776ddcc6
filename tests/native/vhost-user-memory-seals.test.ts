// A frontend that truncates memory it shared must not kill the process. A page of a
// shared mapping past the end of its file raises SIGBUS when touched, which ends the process with
// every disk it serves. Each case runs a hostile frontend against disk a of a process serving two
// disks from IOThreads (tests/lib/two-disk-process.ts) and checks that the process lives, disk b
// serves verified I/O meanwhile, disk a refused what it had to with a sentence and serves the
// next frontend.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { runLoadgen, type LoadgenOptions } from '../../electron/tools/loadgen.js';
import { VhostUserFrontend, type SharedGuestMemory } from '../../electron/tools/vhost-user-frontend.js';
import { inflightQueueRegionSize } from '../../electron/dataplane/vhost-user/inflight.js';
import { posix, closeQuietly } from '../../electron/dataplane/native/posix.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { spawnTwoDiskProcess, type TwoDiskProcess } from '../lib/two-disk-process.js';
import { waitFor } from '../lib/wait.js';

const ALL = (1n << 64n) - 1n;
const MEM = 1 << 16;
const RING = { size: 16, descAddr: 0, availAddr: 0x1000, usedAddr: 0x2000 };

const verified = (socket: string): LoadgenOptions => ({
  socket, rw: 'randwrite', bs: 4096, iodepth: 8, queues: 1, runtimeSec: 0.3, size: 1 << 20,
  verify: true, verifyOnly: false, rwmixread: 50, seed: 5,
});

/** Runs the steps in order until one fails (the server refusing, or closing the connection). */
async function steps(list: (() => Promise<unknown> | unknown)[]): Promise<string | null> {
  for (const s of list) {
    try {
      await s();
    } catch (err) {
      return (err as Error).message;
    }
  }
  return null;
}

/** Guest RAM made the way a careless (or hostile) frontend would: a memfd nobody sealed. */
const unsealedMemory = (): SharedGuestMemory => VhostUserFrontend.allocateMemory(MEM, 0, 0);

/**
 * Serves two disks in a child process, lets `attack` loose on disk a, then checks the process is
 * alive, disk b serves verified I/O, disk a logged `refusal` (when given) and serves the next
 * frontend; then runs the checks the attack returned (what the attacker saw).
 */
async function survives(attack: (socket: string) => Promise<() => void>, refusal: RegExp | null): Promise<void> {
  const dir = tempDir('spindle-seals-');
  let p: TwoDiskProcess | null = null;
  try {
    makeFile(join(dir.path, 'a.img'), 16 << 20);
    makeFile(join(dir.path, 'b.img'), 16 << 20);
    p = await spawnTwoDiskProcess(dir.path);
    const attackerSaw = await attack(p.sockets.a);
    if (refusal) await p.waitFor(refusal);
    const proc = p;
    const b = await runLoadgen(verified(p.sockets.b)).catch(async (err: Error) => {
      // Say how the process ended if that is why disk b stopped (its exit may lag the refused connection).
      await waitFor(() => proc.ended(), { timeoutMs: 10_000, what: 'the process to end' }).catch(() => undefined); // only to say how it ended
      throw new Error(`disk b stopped serving (the process: ${proc.ended() ?? 'still running'}): ${err.message}\n${proc.output()}`);
    });
    assert.equal(p.ended(), null, `the process serving both disks died (${p.ended()}):\n${p.output()}`);
    assert.equal(b.errors, 0);
    assert.equal(b.verify?.mismatches, 0, 'disk b served every block intact while disk a was attacked');
    // The attacker is gone: disk a serves a well-behaved frontend.
    await p.waitFor(/^a \{"kind":"disconnected"/m);
    const a = await runLoadgen(verified(p.sockets.a));
    assert.equal(a.errors, 0);
    assert.equal(a.verify?.mismatches, 0);
    assert.equal(p.ended(), null, `the process died (${p.ended()}):\n${p.output()}`);
    attackerSaw();
  } finally {
    await p?.stop();
    dir.cleanup();
  }
}

test('guest RAM in an unsealed memfd, truncated after SET_MEM_TABLE, then a kick: refused with a sentence, nothing dies', async () => {
  await survives(async (socket) => {
    const fe = VhostUserFrontend.connect(socket);
    const mem = unsealedMemory();
    try {
      let ring = null as { kick(): void } | null;
      const stopped = await steps([
        () => fe.negotiate({ features: ALL, protocolFeatures: ALL }),
        () => fe.setMemTable([mem]),
        async () => { ring = await fe.setupVring(0, RING, () => {}); },
        () => fe.enableVring(0, true),
      ]);
      // Never touched here after this: this process's own mapping would fault too.
      ftruncateSync(mem.fd, 0);
      ring?.kick();
      await steps([() => fe.getQueueNum()]);
      return () => assert.match(stopped ?? '', /closed/, 'the backend closed the connection at SET_MEM_TABLE');
    } finally {
      fe.close();
      VhostUserFrontend.freeMemory(mem);
    }
  }, /closing the connection: SET_MEM_TABLE: memory region 0 is a memfd not sealed against shrinking \(F_SEAL_SHRINK\)/);
});

test('guest RAM in a regular file, truncated after SET_MEM_TABLE, then a kick: refused with a sentence, nothing dies', async () => {
  const dir = tempDir('spindle-seals-file-');
  try {
    const path = makeFile(join(dir.path, 'ram'), MEM);
    await survives(async (socket) => {
      const fd = openSync(path, 'r+');
      const fe = VhostUserFrontend.connect(socket);
      try {
        let ring = null as { kick(): void } | null;
        const region: SharedGuestMemory = { fd, size: MEM, guestAddr: 0, frontendAddr: 0x7f00_0000_0000, memory: new Uint8Array(0) };
        const stopped = await steps([
          () => fe.negotiate({ features: ALL, protocolFeatures: ALL }),
          () => fe.setMemTable([region]),
          async () => { ring = await fe.setupVring(0, RING, () => {}); },
          () => fe.enableVring(0, true),
        ]);
        ftruncateSync(fd, 0);
        ring?.kick();
        await steps([() => fe.getQueueNum()]);
        return () => assert.match(stopped ?? '', /closed/, 'the backend closed the connection at SET_MEM_TABLE');
      } finally {
        fe.close();
        closeSync(fd);
      }
    }, /closing the connection: SET_MEM_TABLE: memory region 0 is not a memfd/);
  } finally {
    dir.cleanup();
  }
});

test('the inflight memfd Spindle hands out (GET_INFLIGHT_FD) cannot be shrunk: it is sealed to its size', async () => {
  let truncate: string | null = 'not tried';
  await survives(async (socket) => {
    const fe = VhostUserFrontend.connect(socket);
    const mem = VhostUserFrontend.allocateMemory(MEM);
    let inflightFd = -1;
    try {
      let ring = null as { kick(): void } | null;
      const stopped = await steps([
        () => fe.negotiate({ features: ALL, protocolFeatures: ALL }),
        async () => {
          const got = await fe.getInflight(1, RING.size);
          assert.ok(got, 'the backend shared an inflight area');
          inflightFd = got.fd;
          // As QEMU does at every (re)connection, then the hostile part.
          await fe.setInflight(got.fd, got.desc);
          try {
            ftruncateSync(inflightFd, 0);
            truncate = null;
          } catch (err) {
            truncate = (err as NodeJS.ErrnoException).code ?? String(err);
          }
        },
        () => fe.setMemTable([mem]),
        async () => { ring = await fe.setupVring(0, RING, () => {}); },
        () => fe.enableVring(0, true),
        () => ring!.kick(),
        () => fe.getQueueNum(),
      ]);
      return () => assert.equal(stopped, null, 'the backend served the whole setup');
    } finally {
      fe.close();
      closeQuietly(inflightFd);
      VhostUserFrontend.freeMemory(mem);
    }
  }, null);
  assert.equal(truncate, 'EPERM', 'ftruncate of the inflight memfd fails: it is sealed (F_SEAL_SHRINK)');
});

test('an unsealed inflight memfd handed back (SET_INFLIGHT_FD), then truncated: refused with a sentence, nothing dies', async () => {
  await survives(async (socket) => {
    const fe = VhostUserFrontend.connect(socket);
    const mem = VhostUserFrontend.allocateMemory(MEM);
    const size = inflightQueueRegionSize(RING.size);
    const inflightFd = posix.memfdCreate('hostile-inflight', size, 0);
    try {
      let ring = null as { kick(): void } | null;
      let refused: string | null = null;
      const stopped = await steps([
        () => fe.negotiate({ features: ALL, protocolFeatures: ALL }),
        async () => {
          refused = await steps([() => fe.setInflight(inflightFd, { mmapSize: size, mmapOffset: 0, numQueues: 1, queueSize: RING.size })]);
          ftruncateSync(inflightFd, 0);
        },
        () => fe.setMemTable([mem]),
        async () => { ring = await fe.setupVring(0, RING, () => {}); },
        () => fe.enableVring(0, true),
        () => ring!.kick(),
        () => fe.getQueueNum(),
      ]);
      return () => {
        assert.match(refused ?? '', /refused SET_INFLIGHT_FD/);
        assert.equal(stopped, null, 'the rest of the setup was served (the ring runs without an inflight area)');
      };
    } finally {
      fe.close();
      closeQuietly(inflightFd);
      VhostUserFrontend.freeMemory(mem);
    }
  }, /SET_INFLIGHT_FD refused: the inflight area cannot be mapped: its file is a memfd not sealed against shrinking/);
});
