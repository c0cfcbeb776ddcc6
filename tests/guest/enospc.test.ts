// A full filesystem under a running guest, end to end: real QEMU, the project's test
// guest, the VM manager with Spindle's own disk server. The VM's image is a sparse file on a small
// loop-mounted ext4 that a ballast file has nearly filled; the guest runs fio, a 48 MiB sequential
// write verified with crc32c, which meets ENOSPC midway. Spindle parks the writes (the guest sees
// no error) and pauses the VM, saying why and how much space is missing; the test frees too little
// (the retry parks the writes again, no error, still paused), then deletes the ballast; the VM
// resumes by itself; fio finishes with 0 errors and every block verifies; the
// guest's kernel log has no I/O error and no "is not a head" (a request completed twice).
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { VmManager } from '../../electron/host/vm/manager.js';
import { VmStore } from '../../electron/host/vm/store.js';
import { methods, type VmInfo } from '../../electron/shared/api.js';
import { makeFile, mountFs } from '../lib/loop.js';
import { guestBoot, GuestAgent } from './vm-guest.js';

const MiB = 1 << 20;
const dir = mkdtempSync(join('/var/tmp', 'spindle-enospc-guest-'));
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_RUNTIME_DIR: join(dir, 'run') };
const boot = await guestBoot();
const manager = new VmManager({ store: new VmStore(join(dir, 'cfg', 'spindle', 'vms')), env });
const fs = mountFs('ext4', 64, { base: dir });
after(async () => {
  await manager.stopAll(1000);
  fs.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const diskLines: Array<{ level: string; message: string }> = [];
manager.on('disk', (e: { level: string; message: string }) => diskLines.push(e));

async function until<T>(what: string, probe: () => T | null | undefined | false, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) {
      const vm = manager.list().vms[0];
      throw new Error(
        `gave up after ${timeoutMs / 1000} s waiting for ${what}; VM: ${JSON.stringify({ state: vm?.state, pauseReason: vm?.pauseReason, disks: vm?.disks })}; disk lines:\n${diskLines.map((l) => `${l.level}: ${l.message}`).join('\n')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A ballast file that leaves `leaveMiB` of the filesystem free (root may use the reserved blocks too). */
function fillUp(leaveMiB: number): string {
  const ballast = join(fs.mountpoint, 'ballast');
  const st = statfsSync(fs.mountpoint);
  execFileSync('fallocate', ['-l', String(st.bfree * st.bsize - leaveMiB * MiB), ballast]);
  return ballast;
}

test('a full filesystem midway through a verified 48 MiB write: the VM pauses, space is freed, it resumes by itself, fio finishes with 0 errors', async (t) => {
  const image = makeFile(join(fs.mountpoint, 'disk.img'), 64 * MiB); // sparse
  const ballast = fillUp(20);
  const created = await manager.create(
    methods['vm.create'].params.parse({
      name: 'full',
      memoryMiB: 192,
      display: 'none',
      network: { user: false },
      boot,
      disks: [{ path: image }],
    }),
  );
  const id = created.config.id;
  const g = new GuestAgent(manager, id);
  try {
    await manager.start(id);
    await g.ready();
    // fio in the background (the agent cannot answer while the VM is paused); its exit code lands in /tmp/fio.rc.
    await g.runOk(
      '(/usr/bin/fio --name=full --filename=/dev/vda --rw=write --bs=1M --size=48M --ioengine=libaio --iodepth=4 --direct=1 ' +
        '--verify=crc32c --do_verify=1 --verify_fatal=1 > /tmp/fio.out 2>&1; echo $? > /tmp/fio.rc) > /dev/null 2>&1 &',
    );

    const paused = await until<VmInfo>(
      'the VM to pause for lack of space',
      () => {
        const vm = manager.get(id);
        return vm.state === 'paused' && vm.waitingForSpace?.length ? vm : null;
      },
      600_000,
    );
    assert.match(
      paused.pauseReason ?? '',
      new RegExp(`paused the VM because the filesystem holding ${image.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is full`),
    );
    const wait = paused.waitingForSpace![0]!;
    assert.equal(wait.diskId, 'd0');
    assert.equal(wait.path, image);
    assert.ok(wait.parkedRequests >= 1, `writes are parked: ${JSON.stringify(wait)}`);
    assert.ok(wait.parkedBytes >= wait.parkedRequests * 512, JSON.stringify(wait));
    assert.ok(
      wait.missingBytes !== null && wait.missingBytes > 0 && wait.missingBytes <= wait.parkedBytes,
      `space is missing: ${JSON.stringify(wait)}`,
    );
    assert.equal(paused.disks[0]!.state, 'no-space');
    t.diagnostic(`paused: ${JSON.stringify(wait)}`);
    // While the filesystem stays full the VM stays paused, and parked is not failed: the disk's fault
    // watch (a look every 2 s) must not say the guest sees I/O errors.
    const heldUntil = Date.now() + 3000;
    while (Date.now() < heldUntil) {
      assert.equal(manager.get(id).state, 'paused', 'stays paused while the filesystem is full');
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(
      diskLines.filter((l) => l.level === 'error'),
      [],
      'no error while the writes are parked',
    );

    // Too little freed: Spindle notices the growth and retries, the write finds no space again and
    // is parked again, without an error; the VM stays paused.
    execFileSync('fallocate', ['--punch-hole', '--offset', '0', '--length', String(256 << 10), ballast]);
    execFileSync('sync', ['-f', fs.mountpoint]);
    await until(
      'a retry that found no space again',
      () => diskLines.some((l) => /Retried the parked writes on .*: its filesystem is still full/.test(l.message)),
      60_000,
    );
    assert.equal(manager.get(id).state, 'paused', 'still paused');
    assert.ok(manager.get(id).waitingForSpace?.[0]?.parkedRequests, 'the write waits again');
    assert.deepEqual(
      diskLines.filter((l) => l.level === 'error'),
      [],
      'no error after the failed retry',
    );

    // Enough freed: Spindle retries the parked writes, and resumes the VM by itself once they are written.
    unlinkSync(ballast);
    execFileSync('sync', ['-f', fs.mountpoint]);
    const resumed = await until(
      'the VM to resume by itself',
      () => {
        const vm = manager.get(id);
        return vm.state === 'running' ? vm : null;
      },
      120_000,
    );
    assert.equal(resumed.pauseReason, undefined);
    assert.equal(resumed.waitingForSpace, undefined);
    assert.equal(resumed.disks[0]!.state, 'serving');

    const deadline = Date.now() + 600_000;
    let rc = '';
    while (!/^\d+/.test(rc)) {
      assert.ok(Date.now() < deadline, 'fio did not finish within 10 minutes');
      await new Promise((r) => setTimeout(r, 1000));
      rc = (await g.runOk('cat /tmp/fio.rc 2>/dev/null || true')).trim();
    }
    const out = await g.runOk('cat /tmp/fio.out');
    t.diagnostic(
      out
        .split('\n')
        .filter((l) => /err=|WRITE:|READ:|verify/.test(l))
        .join(' | '),
    );
    assert.equal(rc, '0', `fio failed:\n${out}`);
    assert.match(out, /err= 0/, out);
    assert.doesNotMatch(out, /verify: bad|crc32c: verify failed|Input\/output error/i, out);
    const dmesg = await g.runOk('dmesg');
    assert.doesNotMatch(dmesg, /is not a head|I\/O error|blk_update_request|Buffer I\/O/, dmesg);
    assert.equal(manager.get(id).state, 'running');
    assert.deepEqual(
      diskLines.filter((l) => l.level === 'error'),
      [],
      'no disk reported an error',
    );
  } finally {
    g.close();
    await manager.forceOff(id).catch(() => undefined);
  }
});
