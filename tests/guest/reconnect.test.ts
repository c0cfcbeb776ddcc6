// A disk server dies under a running VM and the guest does not notice (docs/ARCHITECTURE.md,
// "A disk's IOThread and its supervisor").
// One real guest (QEMU, reconnect=1) with two disks, each running fio with crc32c verification in
// a loop while its server is killed under it:
//  - disk A is served by `spindle export` as its own process, behind a proxy
//    (tests/lib/vhost-user-proxy.ts) that lets the test kill it at an exact message of QEMU's
//    reconnect handshake. It is SIGKILLed KILLS times at random moments (seeded: the seed is
//    printed, SPINDLE_RECONNECT_SEED replays it): on a live connection, before QEMU reconnected,
//    in the middle of the handshake, or stopped with SIGTERM (it must drain and exit);
//  - disk B is served by a DiskServer in this process: its IOThread is made to crash, the
//    DiskServer restarts it by itself.
// QEMU keeps the inflight region (INFLIGHT_SHMFD) and hands it back on reconnect; the new server
// resubmits what was in flight. Figures (kills, restarts, resubmitted requests, verify errors) are
// printed as test diagnostics.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from '../lib/test.js';
import { DiskServer as InAppDiskServer, type DiskEvent } from '../../electron/host/disks/disk-server.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { bootGuest, type Guest } from '../lib/qemu.js';
import { VhostUserProxy } from '../lib/vhost-user-proxy.js';
import { spindleExportServer, type DiskServer } from './disk-server.js';
import { crashIoThread, useTestIoThread } from '../lib/io-thread-hooks.js';
import { waitFor } from '../lib/wait.js';

useTestIoThread(); // crashIoThread below; disk A's `spindle export` gets it with testIoThread
// Completions are held 30 ms in the servers (test-io-thread.ts), so every kill finds requests in flight:
// under TCG on a busy machine the guest otherwise spends most of its time between requests.
process.env.SPINDLE_TEST_COMPLETION_DELAY_MS = '30';

const MiB = 1 << 20;
const SIZE_A = 64 * MiB;
const SIZE_B = 96 * MiB;
/** Kills of `spindle export`: at random moments, some while QEMU is still reconnecting to the
 *  previous one (before it connects, during its handshake, or on a live connection). */
const KILLS = 12;
/** Kills that must find requests in flight (asserted through what the next server resubmitted). */
const MIN_FRUITFUL_KILLS = 2;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The kill schedule's seed: SPINDLE_RECONNECT_SEED pins it (printed by every run, and on failure). */
const SEED = Number(process.env.SPINDLE_RECONNECT_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** mulberry32: a small seeded generator, so a failing schedule can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Guest shell: the /dev name of the virtio disk with `sectors` 512-byte sectors. */
async function findDisk(g: Guest, sectors: number): Promise<string> {
  const out = await g.runOk(`for d in /sys/block/vd*; do [ "$(cat $d/size)" = ${sectors} ] && echo \${d##*/}; done; true`);
  const names = out.split('\n').filter(Boolean);
  assert.equal(names.length, 1, `expected one virtio disk of ${sectors} sectors, guest has: ${out}`);
  return names[0]!;
}

/** Starts fio write+verify passes over 4 regions of `dev` in the background, until /tmp/stop-<tag>. */
async function startFioLoop(g: Guest, dev: string, tag: string): Promise<void> {
  await g.runOk(`rm -f /tmp/stop-${tag} /tmp/loop-${tag}.log
(i=0; while [ ! -e /tmp/stop-${tag} ]; do
  /usr/bin/fio --name=${tag}$i --filename=/dev/${dev} --offset=$(( (i % 4) * 12 ))M --size=12M --rw=randwrite --bs=4k --ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 > /tmp/fio-${tag}.out 2>&1 || { echo "FAIL pass $i"; cat /tmp/fio-${tag}.out; break; }
  i=$((i + 1)); echo "pass $i ok"
done; echo finished) > /tmp/loop-${tag}.log 2>&1 &`);
}

const passes = async (g: Guest, tag: string): Promise<number> =>
  Number((await g.runOk(`grep -c "ok$" /tmp/loop-${tag}.log || true`)).trim() || 0);

/** Lets one more full pass run, stops the loop, and returns its log (asserting no failure). */
async function finishFioLoop(g: Guest, tag: string): Promise<string> {
  const deadline = Date.now() + 300_000;
  const before = await passes(g, tag);
  while ((await passes(g, tag)) < before + 1 && Date.now() < deadline) await sleep(1000);
  await g.runOk(`touch /tmp/stop-${tag}`);
  while (Date.now() < deadline && (await g.run(`grep -q finished /tmp/loop-${tag}.log`)).code !== 0) await sleep(1000);
  const log = await g.runOk(`cat /tmp/loop-${tag}.log`);
  assert.match(log, /finished/, `the fio loop did not finish:\n${log}`);
  assert.doesNotMatch(log, /FAIL/, `guest I/O failed across a server restart:\n${log}`);
  assert.ok((await passes(g, tag)) >= 2, `too few fio passes to mean anything:\n${log}`);
  return log;
}

/** Waits (at most 60 s) until `server`'s output matches `what`; false when it did not. */
async function waitForOutput(server: DiskServer, what: RegExp): Promise<boolean> {
  const deadline = Date.now() + 60_000;
  while (!what.test(server.output!()) && Date.now() < deadline) await sleep(20);
  return what.test(server.output!());
}

/** Where a kill lands relative to QEMU's reconnect to the server it kills; 'stop' is a SIGTERM
 *  on a live connection instead (the export drains and exits; the next one takes over). */
type KillMoment = 'before-connect' | 'handshake' | 'live' | 'stop';

/**
 * QEMU 7.2's reconnect handshake (vhost_user_blk_connect): vhost_dev_init sends 9 messages to
 * Spindle (GET_FEATURES GET_PROTOCOL_FEATURES SET_PROTOCOL_FEATURES GET_QUEUE_NUM
 * SET_BACKEND_REQ_FD SET_OWNER GET_FEATURES SET_VRING_CALL SET_VRING_ERR; which optional ones
 * depends on the protocol features), vhost_user_blk_start about 10 more (SET_FEATURES
 * SET_INFLIGHT_FD SET_VRING_CALL SET_FEATURES SET_MEM_TABLE .. SET_VRING_ENABLE). A backend
 * that dies before QEMU has sent SET_VRING_ERR makes vhost_dev_init fail, and QEMU before 9.1 then
 * never reinstates the chardev handler that runs the next handshake: it reconnects but never talks
 * again, and the guest's I/O on that disk hangs for good (fixed upstream by "vhost-user: fix lost
 * reconnect" and "vhost-user: fix lost reconnect again"). No backend can prevent that, so with such
 * a QEMU the handshake kills land after SET_VRING_ERR, counted by name (a count of 8 once landed
 * on SET_VRING_CALL, one short, and QEMU hung when its write of SET_VRING_ERR found the socket shut).
 */
const HANDSHAKE_MESSAGES = 18;
const LAST_INIT_MESSAGE = 'SET_VRING_ERR';
const START_MESSAGES = 10;
// (Another QEMU version may send a few more or fewer: killAt falls back to a live kill.)
function qemuFixesLostReconnect(): boolean {
  const m = /version (\d+)\.(\d+)/.exec(execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }));
  return !!m && (Number(m[1]) > 9 || (Number(m[1]) === 9 && Number(m[2]) >= 1));
}

/**
 * Ends `server` at moment `m` of QEMU's reconnect to it, with a random delay or message count;
 * says where it landed. A handshake kill is done by the proxy right after the n-th message QEMU
 * sent went through (armed before the server starts, so no connection slips by).
 */
async function killAt(
  server: DiskServer,
  proxy: VhostUserProxy,
  m: KillMoment,
  handshake: Promise<string | null> | null,
  random: () => number,
  guestBusy: () => Promise<void>,
): Promise<string> {
  const kill = (): void => {
    process.kill(server.pid, 'SIGKILL');
    proxy.down();
  };
  if (m === 'before-connect') {
    // The proxy was left down: QEMU's reconnects (once a second) are refused, as by a server
    // that is not up yet, and the server dies before QEMU ever reaches it.
    const ms = Math.floor(random() * 1200);
    await sleep(ms);
    kill();
    return `${ms} ms after ready, before QEMU connected`;
  }
  if (m === 'handshake') {
    // A QEMU whose handshake is shorter than the message drawn never reaches it: 2 s after the
    // memory table the handshake is over, and the kill lands on the live connection instead.
    const over = waitForOutput(server, /guest memory: /).then(async (shared) => {
      if (shared) await sleep(2_000);
      return shared ? ('over' as const) : ('timeout' as const);
    });
    const request = await Promise.race([handshake!, over]);
    assert.notEqual(request, 'timeout', `QEMU did not reconnect to the restarted export within 60 s:\n${server.output!()}`);
    if (request !== null && request !== 'over')
      return `during the handshake, after ${request} (message ${proxy.requests.length}: ${proxy.requests.join(' ')})`;
    // The connection ended before that message (QEMU gave up on it), or the handshake was shorter.
    kill();
    return request === 'over' ? 'after a handshake shorter than the message drawn' : 'after a handshake that ended early';
  }
  assert.ok(await waitForOutput(server, /guest memory: /), `QEMU did not reconnect to the restarted export:\n${server.output!()}`);
  const ms = 200 + Math.floor(random() * 1500);
  await sleep(ms);
  if (m === 'stop') {
    const t0 = Date.now();
    const { code, output } = await server.stop();
    proxy.down();
    assert.equal(
      code,
      0,
      `spindle export did not answer SIGTERM by draining and exiting 0 (code ${code}) after ${Date.now() - t0} ms:\n${output}`,
    );
    assert.match(output, /^stats \{/m, `no stats line after SIGTERM:\n${output}`);
    return `SIGTERM ${ms} ms into a live connection (exited in ${Date.now() - t0} ms)`;
  }
  // A live kill is meant to find requests in flight: on a loaded machine the TCG guest can spend
  // seconds between fio's requests (starting a pass, verifying), so wait until it has some out.
  await guestBusy();
  kill();
  return `${ms} ms into a live connection`;
}

/** What `spindle export` said about resubmission in its output (one line per queue and restart). */
const resubmittedIn = (output: string): number =>
  [...output.matchAll(/resubmitted (\d+) request\(s\)/g)].reduce((n, m) => n + Number(m[1]), 0);

describe('a disk server dies under a running guest, which does not notice (inflight resubmission)', { concurrency: false }, () => {
  const dir = tempDir('spindle-reconnect-');
  const fileA = makeFile(join(dir.path, 'a.img'), SIZE_A);
  const fileB = makeFile(join(dir.path, 'b.img'), SIZE_B);
  // QEMU connects to A through a proxy (tests/lib/vhost-user-proxy.ts) that can kill the export
  // at any message of QEMU's handshake.
  const sockA = join(dir.path, 'a.sock');
  const sockAExport = join(dir.path, 'a-export.sock');
  let proxyA: VhostUserProxy | undefined;
  const sockB = join(dir.path, 'b.sock');
  let exportA: DiskServer | undefined;
  let serverB: InAppDiskServer | undefined;
  let guest: Guest | undefined;
  const exportOutputs: string[] = [];
  // directsync on the host's disk: each write waits for the device, so kills often find requests
  // in the server (under TCG the guest otherwise spends most of its time between requests).
  const startA = () =>
    spindleExportServer({ path: fileA, socket: sockAExport, aio: 'threads', cache: 'directsync', queues: 1, testIoThread: true });

  before(async () => {
    exportA = await startA();
    proxyA = new VhostUserProxy(sockA, sockAExport);
    serverB = await InAppDiskServer.start({
      path: fileB,
      socketPath: sockB,
      aio: 'threads',
      cache: 'writeback',
      nowait: 'off',
      readOnly: false,
      queues: 1,
      serial: 'b',
    });
    guest = await bootGuest({ disks: [{ socket: sockA }, { socket: sockB }] });
  });

  after(async () => {
    try {
      await guest?.shutdown();
    } finally {
      proxyA?.close();
      try {
        if (exportA) exportOutputs.push((await exportA.stop()).output);
      } finally {
        try {
          await serverB?.stop();
        } finally {
          dir.cleanup();
        }
      }
    }
  });

  it(`spindle export SIGKILLed (or SIGTERMed) ${KILLS} times at random moments, some while QEMU reconnects or during its handshake, under fio --verify=crc32c: requests resubmitted, fio finishes with no error`, async (t) => {
    const g = guest!;
    const random = rng(SEED);
    t.diagnostic(`kill schedule seed ${SEED} (replay with SPINDLE_RECONNECT_SEED=${SEED})`);
    const dev = await findDisk(g, SIZE_A / 512);
    await startFioLoop(g, dev, 'a');
    const moments: KillMoment[] = ['before-connect', 'handshake', 'live', 'stop'];
    // A QEMU that survives a kill anywhere: after any of its messages; an older one: after SET_VRING_ERR.
    const handshakeKill = qemuFixesLostReconnect()
      ? { from: undefined, first: 1, last: HANDSHAKE_MESSAGES }
      : { from: LAST_INIT_MESSAGE, first: 0, last: START_MESSAGES };
    const schedule: string[] = [];
    const guestBusy = async (): Promise<void> => {
      await waitFor(async () => /[1-9]/.test(await g.runOk(`cat /sys/block/${dev}/inflight`)), {
        timeoutMs: 120_000,
        intervalMs: 0,
        what: `the guest to have requests in flight on /dev/${dev}`,
        detail: () => g.runOk('cat /tmp/loop-a.log'),
      });
    };
    try {
      // The first kill lands on the connection QEMU made at boot.
      let moment: KillMoment = 'live';
      let handshake: Promise<string | null> | null = null;
      for (let k = 0; k < KILLS; k++) {
        const running = await g.run('grep -q finished /tmp/loop-a.log');
        assert.notEqual(running.code, 0, `the fio loop ended before kill ${k + 1}:\n${await g.runOk('cat /tmp/loop-a.log')}`);
        schedule.push(`${k + 1}: ${await killAt(exportA!, proxyA!, moment, handshake, random, guestBusy)}`);
        exportOutputs.push((await exportA!.stop()).output);
        // The first and the last kill land on a live connection, so at least MIN_FRUITFUL_KILLS of
        // them can find requests in flight whatever the seed draws in between.
        moment = k + 2 < KILLS ? moments[Math.floor(random() * moments.length)]! : 'live';
        const n = handshakeKill.first + Math.floor(random() * (handshakeKill.last - handshakeKill.first + 1));
        handshake =
          moment === 'handshake'
            ? proxyA!.armAfter(
                n,
                (_request, pid) => {
                  if (pid) process.kill(pid, 'SIGKILL');
                  proxyA!.down();
                },
                handshakeKill.from,
              )
            : null;
        exportA = await startA();
        if (moment !== 'before-connect') proxyA!.up();
      }
      // The last server keeps serving: QEMU reconnects and fio goes on to the end.
      assert.ok(await waitForOutput(exportA!, /guest memory: /), `QEMU did not reconnect to the last export:\n${exportA!.output!()}`);
      const log = await finishFioLoop(g, 'a');
      exportOutputs.push((await exportA!.stop()).output);
      exportA = undefined;
      const resubmitted = exportOutputs.reduce((n, o) => n + resubmittedIn(o), 0);
      const fruitful = exportOutputs.filter((o) => resubmittedIn(o) > 0).length;
      t.diagnostic(
        `spindle export: kills ${KILLS} (${schedule.join('; ')}), restarts that resubmitted requests ${fruitful}, requests resubmitted ${resubmitted}, fio verify errors 0, passes ${log.match(/ok$/gm)?.length ?? 0}`,
      );
      // Kills land in the middle of iodepth-16 I/O: some of them must have found requests in flight.
      assert.ok(
        fruitful >= MIN_FRUITFUL_KILLS,
        `only ${fruitful} of ${KILLS} kills under load found requests in flight:\n${exportOutputs.join('\n---\n')}`,
      );
    } catch (err) {
      throw new Error(
        `with kill schedule seed ${SEED} (SPINDLE_RECONNECT_SEED=${SEED}), kills: ${schedule.join('; ')}\n${(err as Error).message}\n` +
          `--- proxy: ${proxyA!.connections} connection(s), the last one's messages: ${proxyA!.requests.join(' ')}\n${g.describe()}`,
        { cause: err },
      );
    }
    // Keep serving A for the rest of the run (the guest still has it).
    exportA = await startA();
    proxyA!.up();
  });

  it('the in-app DiskServer restarts its crashed IOThread by itself; QEMU reconnects; fio finishes with no error', async (t) => {
    const g = guest!;
    const s = serverB!;
    const events: DiskEvent[] = [];
    s.on('event', (e) => events.push(e));
    const dev = await findDisk(g, SIZE_B / 512);
    await startFioLoop(g, dev, 'b');
    const crashes = 3;
    for (let k = 0; k < crashes; k++) {
      await sleep(1500 + 500 * k);
      const running = await g.run('grep -q finished /tmp/loop-b.log');
      assert.notEqual(running.code, 0, `the fio loop ended before crash ${k + 1}:\n${await g.runOk('cat /tmp/loop-b.log')}`);
      const restarted = events.filter((e) => e.kind === 'restarted').length;
      await crashIoThread(s);
      await waitFor(() => events.filter((e) => e.kind === 'restarted').length > restarted || s.failed, {
        timeoutMs: 60_000,
        what: 'the disk server to restart after the crash',
      });
      assert.equal(s.failed, null, `the disk server gave up: ${s.failed}`);
      // Wait for QEMU to come back before the next crash, so each one lands on a live connection.
      const connected = events.filter((e) => e.kind === 'connected').length;
      await waitFor(() => events.filter((e) => e.kind === 'connected').length > connected, {
        timeoutMs: 120_000,
        what: 'QEMU to reconnect after the restart',
      });
    }
    const log = await finishFioLoop(g, 'b');
    const { restarts, resubmitted } = s.recovery;
    t.diagnostic(
      `in-app DiskServer: worker crashes ${crashes}, restarts survived ${restarts}, requests resubmitted ${resubmitted}, fio verify errors 0, passes ${log.match(/ok$/gm)?.length ?? 0}`,
    );
    assert.equal(restarts, crashes);
    assert.ok(events.some((e) => e.kind === 'restarting' && /crash requested by a test/.test(e.reason)));
  });
});
