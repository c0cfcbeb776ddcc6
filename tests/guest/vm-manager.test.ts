// The VM manager through the API (createBackend's router, as the UI and CLI use it): real QEMU, the
// project's test guest (fio, e2fsprogs), disks served by Spindle's own disk servers. Three boots
// in all: VM A; then A again together with VM B.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readdirSync, readlinkSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../electron/api/backend.js';
import type { DiskSample, StatsTick, VmInfo } from '../../electron/shared/api.js';
import { ServedDisk } from '../../electron/host/vm/served-disk.js';
import { attachLoop, makeFile } from '../lib/loop.js';
import { runLoadgen } from '../../electron/tools/loadgen.js';
import { guestBoot, GuestAgent } from './vm-guest.js';
import { waitFor } from '../lib/wait.js';

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'spindle-vmmgr-'));
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_DATA_HOME: join(dir, 'data'), XDG_RUNTIME_DIR: join(dir, 'run') };
const backend = createBackend({ env });
const boot = await guestBoot();
const loop = attachLoop(makeFile(join(dir, 'loop-backing.img'), 64 * MiB, { written: true }));
after(async () => {
  await backend.close();
  loop.detach();
  rmSync(dir, { recursive: true, force: true });
});

const call = <T = VmInfo>(method: string, params: unknown): Promise<T> => backend.router.call(method, params) as Promise<T>;
const ticks: StatsTick[] = [];
backend.router.subscribe('stats', {}, (t) => ticks.push(t as StatsTick));
const diskErrors: string[] = [];
const diskLines: string[] = [];
backend.router.subscribe('disk.events', {}, (e) => {
  const ev = e as { level: string; message: string; diskId: string };
  diskLines.push(`${ev.diskId}: ${ev.message}`);
  if (ev.level === 'error') diskErrors.push(ev.message);
});

async function waitState(id: string, state: string, timeoutMs = 60_000): Promise<VmInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const vm = await call('vm.get', { id });
    if (vm.state === state) return vm;
    if (Date.now() > deadline) throw new Error(`VM ${id} is ${vm.state}, wanted ${state}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until a stats tick shows this disk writing (the sampler's own 500 ms timer). */
async function sawWrites(vmId: string, diskId: string, since: number): Promise<DiskSample> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const s = ticks
      .filter((t) => t.t > since)
      .flatMap((t) => t.disks)
      .find((d) => d.vmId === vmId && d.diskId === diskId && d.writeMBps > 0);
    if (s) return s;
    if (Date.now() > deadline) throw new Error(`no tick showed writes on ${vmId}/${diskId}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The guest device whose serial is `serial` (virtio-blk exposes GET_ID as /sys/block/vdX/serial). */
async function devOf(g: GuestAgent, serial: string): Promise<string> {
  const out = await g.runOk(
    `for i in $(seq 1 100); do for d in /sys/block/vd*; do [ "$(cat $d/serial 2>/dev/null)" = "${serial}" ] && { echo \${d##*/}; exit 0; }; done; sleep 0.2; done; exit 1`,
  );
  return `/dev/${out.trim()}`;
}

/** Writes 4 MiB of fresh random data at `offsetMiB`, flushes, reads it back past the cache; returns its md5. */
async function writeVerified(g: GuestAgent, dev: string, offsetMiB: number): Promise<string> {
  const out = await g.runOk(
    `dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null && dd if=/tmp/pat of=${dev} bs=1M seek=${offsetMiB} oflag=direct conv=fsync 2>/dev/null && ` +
      `a=$(md5sum < /tmp/pat) && b=$(dd if=${dev} bs=1M skip=${offsetMiB} count=4 iflag=direct 2>/dev/null | md5sum) && echo "$a|$b"`,
  );
  const [a, b] = out
    .trim()
    .split('|')
    .map((s) => s.split(' ')[0]);
  assert.equal(b, a, `read back from ${dev} what was written`);
  return a!;
}

const guestMd5 = async (g: GuestAgent, dev: string, offsetMiB: number): Promise<string> =>
  (await g.runOk(`dd if=${dev} bs=1M skip=${offsetMiB} count=4 iflag=direct 2>/dev/null | md5sum`)).trim().split(' ')[0]!;

function hostMd5(path: string, offsetMiB: number): string {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(4 * MiB);
    assert.equal(readSync(fd, buf, 0, buf.length, offsetMiB * MiB), buf.length);
    return createHash('md5').update(buf).digest('hex');
  } finally {
    closeSync(fd);
  }
}

/** Files and devices this process holds open. */
function openPaths(): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      return [readlinkSync(`/proc/self/fd/${fd}`)];
    } catch {
      return [];
    }
  });
}

test('two disks written and verified, hot-plug, live aio switch under fio verify, clean restart, SIGKILL crash, two VMs', async () => {
  const img = makeFile(join(dir, 'a0.img'), 48 * MiB);
  const hot = makeFile(join(dir, 'a2.img'), 16 * MiB);
  const bImg = makeFile(join(dir, 'b0.img'), 16 * MiB);
  const a = await call('vm.create', {
    name: 'Data A',
    memoryMiB: 256,
    display: 'none',
    network: { user: false },
    boot,
    disks: [{ path: img }, { path: loop.device }],
  });
  const b = await call('vm.create', {
    name: 'Data B',
    memoryMiB: 256,
    display: 'none',
    network: { user: false },
    boot,
    disks: [{ path: bImg }],
  });
  const A = a.config.id;
  assert.deepEqual(
    a.config.disks.map((d) => [d.kind, d.aio, d.cache]),
    [
      ['file', 'threads', 'writeback'],
      ['block', 'native', 'none'],
    ],
  );
  // The live sequence below starts from threads on the loop device (a stopped VM's disk changes in its config).
  await call('disk.set', { vmId: A, diskId: 'd1', patch: { aio: 'threads' } });

  const ga = new GuestAgent(backend.manager, A);
  const gb = new GuestAgent(backend.manager, b.config.id);
  try {
    // ── Boot 1: write and verify on the image file and the loop device; the chart sees the writes.
    const started = await call('vm.start', { id: A });
    assert.equal(started.state, 'running');
    assert.deepEqual(
      started.disks.map((d) => d.state),
      ['serving', 'serving'],
    );
    await ga.ready();
    const fileDev = await devOf(ga, 'spindle-d0');
    const loopDev = await devOf(ga, 'spindle-d1');
    const t0 = Date.now();
    const md5File = await writeVerified(ga, fileDev, 8);
    const md5Loop = await writeVerified(ga, loopDev, 40);
    const sample = await sawWrites(A, 'd0', t0);
    assert.ok(sample.writeIops > 0 && sample.backendCpuSec > 0, JSON.stringify(sample));
    await sawWrites(A, 'd1', t0);

    // ── Hot-plug a third disk (its server accepts only this QEMU) and use it.
    const plugged = await call('disk.attach', { vmId: A, disk: { path: hot } });
    assert.equal(plugged.disks.find((d) => d.id === 'd2')!.state, 'serving');
    const hotDev = await devOf(ga, 'spindle-d2');
    const md5Hot = await writeVerified(ga, hotDev, 4);

    // ── Disk sockets serve only this VM's QEMU: another process (this one) is refused and logged,
    // on a disk started with the VM (awaitPeer + expectPeer) and on the hot-plugged one (peerPid).
    const runDir = join(dir, 'run', 'spindle', A);
    for (const disk of ['d0', 'd2']) {
      await assert.rejects(
        runLoadgen({
          socket: join(runDir, `${disk}.sock`),
          rw: 'randread',
          bs: 4096,
          iodepth: 1,
          queues: 1,
          runtimeSec: 0.2,
          size: 0,
          verify: false,
          verifyOnly: false,
          rwmixread: 100,
          seed: 1,
        }),
        Error,
        `${disk}: a stranger is not served`,
      );
      const refusal = `${disk}: vhost-user ${join(runDir, `${disk}.sock`)}: refused a frontend connection from pid ${process.pid} (uid ${process.getuid!()}): not the process this disk belongs to`;
      await waitFor(() => diskLines.includes(refusal), {
        timeoutMs: 30_000,
        what: `${disk}: the refusal to be logged`,
        detail: () => diskLines.join('\n'),
      });
    }
    assert.equal(await guestMd5(ga, hotDev, 4), md5Hot, 'the guest still reads its disk after the refused stranger');

    // ── threads -> native -> io_uring on the loop device while the guest runs fio with crc32c verify.
    await ga.runOk(
      `(for i in 1 2 3 4 5 6; do /usr/bin/fio --name=v$i --filename=${loopDev} --offset=$(( (i % 2) * 16 ))M --size=16M --rw=randwrite --bs=4k ` +
        `--ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 > /tmp/fio.out 2>&1 ` +
        `|| { echo "FAIL pass $i"; cat /tmp/fio.out; break; }; grep -q 'err= 0' /tmp/fio.out || { echo "ERR pass $i"; cat /tmp/fio.out; break; }; echo "pass $i"; done; echo finished) > /tmp/loop.log 2>&1 &`,
    );
    const passes = async (): Promise<string> => ga.runOk('cat /tmp/loop.log');
    const until = async (re: RegExp): Promise<string> => {
      const deadline = Date.now() + 300_000;
      for (;;) {
        const log = await passes();
        if (re.test(log) || /FAIL|ERR|finished/.test(log)) return log;
        if (Date.now() > deadline) throw new Error(`fio loop: ${re} not reached:\n${log}`);
        await new Promise((r) => setTimeout(r, 300));
      }
    };
    await until(/pass 1/);
    const toNative = await call('disk.set', { vmId: A, diskId: 'd1', patch: { aio: 'native' } });
    assert.equal(toNative.config.disks[1]!.aio, 'native');
    await until(/pass 3/);
    await call('disk.set', { vmId: A, diskId: 'd1', patch: { aio: 'io_uring' } });
    const log = await until(/finished/);
    assert.doesNotMatch(log, /FAIL|ERR/, log);
    assert.match(log, /pass 6\nfinished/, log);
    const served = [...backend.manager.diskHosts()].find((h) => h.vmId === A && h.diskId === 'd1')!.host;
    assert.ok(served instanceof ServedDisk);
    assert.equal(served.server.currentModes.aio, 'io_uring', 'the disk server itself now runs io_uring');
    // A conflicting live change is refused with the reason and changes nothing.
    await assert.rejects(
      call('disk.set', { vmId: A, diskId: 'd1', patch: { aio: 'native', cache: 'writeback' } }),
      /needs cache 'none' or 'directsync'/,
    );
    assert.equal(served.server.currentModes.aio, 'io_uring');
    assert.deepEqual(diskErrors, [], 'no disk reported an error');

    // ── Clean shutdown (the guest powers off), then both VMs start at once; A's data is intact.
    ga.fire('sync; poweroff -f');
    const off = await waitState(A, 'stopped');
    assert.equal(off.crash, undefined);
    assert.deepEqual([...backend.manager.diskHosts()], [], 'every disk server stopped with its VM');
    const markA = ga.mark();
    const [ra, rb] = await Promise.all([call('vm.start', { id: A }), call('vm.start', { id: b.config.id })]);
    assert.ok(ra.pid && rb.pid && ra.pid !== rb.pid);
    assert.deepEqual(
      ra.config.disks.map((d) => d.aio),
      ['threads', 'io_uring', 'threads'],
      'the live switch was saved',
    );
    await Promise.all([ga.ready(markA), gb.ready()]);
    assert.equal(await guestMd5(ga, await devOf(ga, 'spindle-d0'), 8), md5File);
    assert.equal(await guestMd5(ga, await devOf(ga, 'spindle-d1'), 40), md5Loop);
    assert.equal(await guestMd5(ga, await devOf(ga, 'spindle-d2'), 4), md5Hot);
    const bDev = await devOf(gb, 'spindle-d0');
    await writeVerified(gb, bDev, 0);

    // ── A's QEMU SIGKILLed after a flushed write: 'crashed', its disks closed, the data on the host; B goes on.
    const flushed = await writeVerified(ga, await devOf(ga, 'spindle-d0'), 20);
    process.kill(ra.pid!, 'SIGKILL');
    const crashed = await waitState(A, 'crashed');
    assert.equal(crashed.crash!.signal, 'SIGKILL');
    assert.deepEqual(
      crashed.disks.map((d) => d.state),
      ['stopped', 'stopped', 'stopped'],
    );
    assert.deepEqual(
      [...backend.manager.diskHosts()].filter((h) => h.vmId === A),
      [],
    );
    const held = openPaths();
    for (const p of [img, loop.device, hot]) assert.ok(!held.includes(p), `${p} closed`);
    assert.equal(hostMd5(img, 20), flushed, 'the flushed write is in the image file');
    assert.equal(hostMd5(img, 8), md5File);
    assert.equal(hostMd5(loop.device, 40), md5Loop);
    assert.equal((await call('vm.get', { id: b.config.id })).state, 'running');
    await writeVerified(gb, bDev, 8);

    gb.fire('sync; poweroff -f');
    assert.equal((await waitState(b.config.id, 'stopped')).crash, undefined);
  } finally {
    ga.close();
    gb.close();
  }
});
