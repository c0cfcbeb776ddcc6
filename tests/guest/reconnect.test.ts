// Issue 6 §3, the headline: a disk server dies under a running VM and the guest does not notice.
// One real guest (QEMU, reconnect=1) with two disks, each running fio with crc32c verification in
// a loop while its server is killed under it:
//  - disk A is served by `spindle export` as its own process: SIGKILLed and restarted by the test;
//  - disk B is served by a DiskServer in this process: its IOThread is made to crash, the
//    DiskServer restarts it by itself.
// QEMU keeps the inflight region (INFLIGHT_SHMFD) and hands it back on reconnect; the new server
// resubmits what was in flight. Figures (kills, restarts, resubmitted requests, verify errors) are
// printed as test diagnostics.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DiskServer as InAppDiskServer, type DiskEvent } from '../../electron/iothread/disk-server.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { bootGuest, type Guest } from '../lib/qemu.js';
import { spindleExportServer, type DiskServer } from './disk-server.js';

process.env.SPINDLE_TEST_HOOKS = '1';
// Completions are held 30 ms in the servers (a test hook), so every kill finds requests in flight:
// under TCG on a busy machine the guest otherwise spends most of its time between requests.
process.env.SPINDLE_TEST_COMPLETION_DELAY_MS = '30';

const MiB = 1 << 20;
const SIZE_A = 64 * MiB;
const SIZE_B = 96 * MiB;
/** Kills at least this many times, and on until two kills found requests in flight (at most MAX_KILLS). */
const MIN_KILLS = 4;
const MAX_KILLS = 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

/** Waits until a restarted `spindle export` has QEMU connected again with guest memory mapped. */
async function waitForReconnect(server: DiskServer): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!/guest memory: /.test(server.output!()) && Date.now() < deadline) await sleep(100);
  assert.match(server.output!(), /guest memory: /, `QEMU did not reconnect to the restarted export:\n${server.output!()}`);
}

/** What `spindle export` said about resubmission in its output (one line per queue and restart). */
const resubmittedIn = (output: string): number =>
  [...output.matchAll(/resubmitted (\d+) request\(s\)/g)].reduce((n, m) => n + Number(m[1]), 0);

describe('a disk server dies under a running guest, which does not notice (inflight resubmission)', { concurrency: false }, () => {
  const dir = tempDir('spindle-reconnect-');
  const fileA = makeFile(join(dir.path, 'a.img'), SIZE_A);
  const fileB = makeFile(join(dir.path, 'b.img'), SIZE_B);
  const sockA = join(dir.path, 'a.sock');
  const sockB = join(dir.path, 'b.sock');
  let exportA: DiskServer | undefined;
  let serverB: InAppDiskServer | undefined;
  let guest: Guest | undefined;
  const exportOutputs: string[] = [];
  // directsync on the host's disk: each write waits for the device, so kills often find requests
  // in the server (under TCG the guest otherwise spends most of its time between requests).
  const startA = () => spindleExportServer({ path: fileA, socket: sockA, aio: 'threads', cache: 'directsync', queues: 1 });

  before(async () => {
    exportA = await startA();
    serverB = await InAppDiskServer.start({
      path: fileB, socketPath: sockB, aio: 'threads', cache: 'writeback', nowait: 'off', readOnly: false, queues: 1, serial: 'b',
    });
    guest = await bootGuest({ disks: [{ socket: sockA }, { socket: sockB }] });
  });

  after(async () => {
    try { await guest?.shutdown(); } finally {
      try { if (exportA) exportOutputs.push((await exportA.stop()).output); } finally {
        try { await serverB?.stop(); } finally { dir.cleanup(); }
      }
    }
  });

  it(`spindle export SIGKILLed (${MIN_KILLS} to ${MAX_KILLS} times) under fio --verify=crc32c: restarted, requests resubmitted, fio finishes with no error`, async (t) => {
    const g = guest!;
    const dev = await findDisk(g, SIZE_A / 512);
    await startFioLoop(g, dev, 'a');
    let kills = 0;
    // A server's output shows what it resubmitted after taking over from the one killed before it.
    const fruitfulKills = () => exportOutputs.filter((o) => resubmittedIn(o) > 0).length;
    for (let k = 0; k < MAX_KILLS && (k < MIN_KILLS || fruitfulKills() < 2); k++) {
      await sleep(1000 + 137 * k);
      const running = await g.run('grep -q finished /tmp/loop-a.log');
      assert.notEqual(running.code, 0, `the fio loop ended before kill ${k + 1}:\n${await g.runOk('cat /tmp/loop-a.log')}`);
      process.kill(exportA!.pid, 'SIGKILL');
      exportOutputs.push((await exportA!.stop()).output);
      kills++;
      exportA = await startA();
      // Like the in-app half below: the next kill lands on a live connection, after QEMU has
      // reconnected and shared guest memory again (a kill during QEMU's reconnect handshake is a
      // different failure, not what this test measures).
      await waitForReconnect(exportA);
    }
    const log = await finishFioLoop(g, 'a');
    exportOutputs.push((await exportA!.stop()).output);
    exportA = undefined;
    const resubmitted = exportOutputs.reduce((n, o) => n + resubmittedIn(o), 0);
    t.diagnostic(`spindle export: kills ${kills}, restarts survived ${kills}, kills that found requests in flight ${fruitfulKills()}, requests resubmitted ${resubmitted}, fio verify errors 0, passes ${log.match(/ok$/gm)?.length ?? 0}`);
    // Kills land in the middle of iodepth-16 I/O: some of them must have found requests in flight.
    assert.ok(resubmitted > 0, `no request was resubmitted over ${kills} kills under load:\n${exportOutputs.join('\n---\n')}`);
    // Keep serving A for the rest of the run (the guest still has it).
    exportA = await startA();
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
      await s.crashForTest();
      for (let i = 0; i < 200 && events.filter((e) => e.kind === 'restarted').length === restarted && !s.failed; i++) await sleep(50);
      assert.equal(s.failed, null, `the disk server gave up: ${s.failed}`);
      // Wait for QEMU to come back before the next crash, so each one lands on a live connection.
      const connected = events.filter((e) => e.kind === 'connected').length;
      for (let i = 0; i < 200 && events.filter((e) => e.kind === 'connected').length === connected; i++) await sleep(50);
    }
    const log = await finishFioLoop(g, 'b');
    const { restarts, resubmitted } = s.recovery;
    t.diagnostic(`in-app DiskServer: worker crashes ${crashes}, restarts survived ${restarts}, requests resubmitted ${resubmitted}, fio verify errors 0, passes ${log.match(/ok$/gm)?.length ?? 0}`);
    assert.equal(restarts, crashes);
    assert.ok(events.some((e) => e.kind === 'restarting' && /crash requested by a test/.test(e.reason)));
  });
});
