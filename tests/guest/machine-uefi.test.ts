// A modern machine under one boot (TCG: each boot is costly, so every check runs inside it): the
// test guest on q35 with UEFI (OVMF; Debian's kernel boots as an EFI stub through -kernel) and a
// TPM 2.0 (swtpm), a TCP port forward to a busybox nc listener in the guest, CD-ROM insert and
// eject through QMP, a disk hot-plugged through q35's spare PCIe root ports, and an ACPI shutdown
// the guest honours (busybox acpid) instead of the forced-off timeout.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { createConnection, createServer } from 'node:net';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../electron/api/backend.js';
import type { VmInfo } from '../../electron/shared/api.js';
import { makeFile } from '../lib/loop.js';
import { makeDataIso } from '../lib/test-iso.js';
import { guestBoot, GuestAgent } from './vm-guest.js';

const dir = mkdtempSync(join(tmpdir(), 'spindle-machine-uefi-'));
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_DATA_HOME: join(dir, 'data'), XDG_RUNTIME_DIR: join(dir, 'run') };
const backend = createBackend({ env });
const boot = await guestBoot();
after(async () => {
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
});
const call = <T = VmInfo>(method: string, params: unknown): Promise<T> => backend.router.call(method, params) as Promise<T>;
const warnings: string[] = [];
backend.router.subscribe('disk.events', {}, (e) => {
  const ev = e as { level: string; message: string };
  if (ev.level !== 'info') warnings.push(ev.message);
});

/** A TCP port on 127.0.0.1 nothing listens on right now. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Connects to 127.0.0.1:port, sends `line`, returns all it reads until the peer closes (one try). */
function exchange(port: number, line: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let got = '';
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(got);
    }, timeoutMs);
    sock.on('connect', () => sock.write(`${line}\n`));
    sock.on('data', (d) => (got += d.toString()));
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

test('q35 + UEFI + TPM: the guest sees /dev/tpm0; a port forward, CD-ROM change and hot-plug work; ACPI shutdown is honoured', async () => {
  const hostPort = await freePort();
  const mediaIso = makeDataIso(dir, 'media', 'SPINDLEMEDIA', 'media-marker-7f3a');
  const hotDisk = makeFile(join(dir, 'hot.img'), 16 << 20);
  const created = await call('vm.create', {
    name: 'modern',
    memoryMiB: 512,
    firmware: 'uefi',
    tpm: true,
    boot: { ...boot, cmdline: `${boot.cmdline} spindle.acpid=1` },
    network: { user: true, forwards: [{ proto: 'tcp', hostPort, guestPort: 7000 }] },
    cdroms: [null],
    display: 'none',
  });
  assert.equal(created.config.machine, 'q35', 'a new VM is q35 unless told otherwise');
  assert.match(created.config.network.mac ?? '', /^52:54:00:/, 'a new VM gets its own MAC address');
  const id = created.config.id;

  const g = new GuestAgent(backend.manager, id);
  try {
    await call('vm.start', { id });
    await g.ready(0, 480_000);
    const started = await call('vm.get', { id });
    assert.deepEqual(started.media, [{ drive: 'cd1', path: null }], 'the extra drive starts empty');

    // UEFI, q35 (the Q35 host bridge is 8086:29c0), TPM 2.0.
    const facts = await g.runOk(
      'test -d /sys/firmware/efi && echo efi=yes; cat /sys/bus/pci/devices/0000:00:00.0/device; ls /dev/tpm0 && cat /sys/class/tpm/tpm0/tpm_version_major',
    );
    assert.match(facts, /efi=yes/, `the guest booted through UEFI:\n${facts}`);
    assert.match(facts, /0x29c0/, `the machine is q35:\n${facts}`);
    assert.match(facts, /\/dev\/tpm0\n2\n/, `the guest sees a TPM 2.0 at /dev/tpm0:\n${facts}`);
    assert.match(g.text, /spindle-guest: acpid running/, 'busybox acpid runs in the guest');

    // Port forward: 127.0.0.1:hostPort on the host reaches a busybox nc listener on guest port 7000.
    await g.runOk(
      'ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ' +
        'printf \'#!/bin/sh\\nread l\\necho "guest got: $l"\\n\' > /tmp/reply && chmod +x /tmp/reply && ' +
        '(nc -ll -p 7000 -e /tmp/reply >/dev/null 2>&1 &) && sleep 0.5',
    );
    let reply = '';
    for (const deadline = Date.now() + 60_000; !/guest got: hello-7000/.test(reply);) {
      if (Date.now() > deadline)
        assert.fail(`no reply through the forward 127.0.0.1:${hostPort} -> guest:7000 within 60 s (last: ${JSON.stringify(reply)})`);
      reply = await exchange(hostPort, 'hello-7000').catch((e: Error) => e.message);
      if (!/guest got/.test(reply)) await new Promise((r) => setTimeout(r, 500));
    }
    const forwards = readFileSync(`/proc/${started.pid}/cmdline`, 'utf8').split('\0');
    assert.ok(
      forwards.some((a) => a.includes(`hostfwd=tcp:127.0.0.1:${hostPort}-:7000`)),
      'the forward listens on loopback only',
    );

    // CD-ROM: insert an ISO into the empty drive of the running VM, read it in the guest, eject it.
    const inserted = await call('vm.media', { id, drive: 'cd1', path: mediaIso });
    assert.deepEqual(inserted.media, [{ drive: 'cd1', path: mediaIso }]);
    assert.deepEqual(inserted.config.cdroms, [mediaIso], 'the inserted ISO is kept in the config');
    const seen = await g.runOk(
      'for i in $(seq 1 100); do for d in /dev/sr*; do mount -t iso9660 -o ro $d /mnt 2>/dev/null && { cat /mnt/marker.txt; umount /mnt; exit 0; }; done; sleep 0.3; done; ls -l /dev/sr* ; exit 1',
    );
    assert.match(seen, /media-marker-7f3a/, 'the guest reads the inserted ISO');
    const ejected = await call('vm.media', { id, drive: 'cd1', path: null });
    assert.deepEqual(ejected.media, [{ drive: 'cd1', path: null }]);
    const empty = await g.run(
      'for i in $(seq 1 50); do ok=0; for d in /dev/sr*; do dd if=$d of=/dev/null bs=2048 count=1 2>/dev/null && ok=1; done; [ $ok = 0 ] && exit 0; sleep 0.3; done; exit 1',
    );
    assert.equal(empty.code, 0, `after the eject no drive has a medium:\n${empty.output}`);

    // Hot-plug on q35: a disk attached to the running VM appears behind a spare root port, and leaves again.
    const attached = await call('disk.attach', { vmId: id, disk: { path: hotDisk, serial: 'hot-q35' } });
    const diskId = attached.config.disks.at(-1)!.id;
    await g.runOk(
      'for i in $(seq 1 150); do for d in /sys/block/vd*; do [ "$(cat $d/serial 2>/dev/null)" = hot-q35 ] && exit 0; done; sleep 0.2; done; exit 1',
    );
    await call('disk.detach', { vmId: id, diskId });
    await g.runOk('for i in $(seq 1 150); do grep -qs hot-q35 /sys/block/vd*/serial || exit 0; sleep 0.2; done; exit 1');

    // A running VM says what needs it stopped, and keeps a rename.
    await assert.rejects(call('vm.update', { id, patch: { memoryMiB: 1024, tpm: false } }), (e: Error) =>
      /is running; shut it down to change the memory size, the TPM/.test(e.message),
    );
    const renamed = await call('vm.update', { id, patch: { name: 'modern box' } });
    assert.equal(renamed.config.name, 'modern box');

    // ACPI shutdown: acpid sees the power button and powers off; no forced-off timeout.
    const t0 = Date.now();
    const stopped = await call<VmInfo & { forced?: boolean }>('vm.shutdown', { id, timeoutMs: 300_000 });
    assert.equal(stopped.state, 'stopped');
    assert.equal(stopped.forced, undefined, `the guest powered off by itself (${Date.now() - t0} ms); warnings: ${warnings.join(' | ')}`);
    assert.equal(stopped.crash, undefined);
    assert.match(g.text, /power button pressed, powering off/, 'the guest saw the power button');
  } finally {
    g.close();
    await call('vm.forceOff', { id }).catch(() => undefined);
  }

  // The TPM's state is kept with the VM; its swtpm ended with it.
  const tpmDir = join(dir, 'cfg', 'spindle', 'tpm', id);
  assert.ok(existsSync(tpmDir) && readdirSync(tpmDir).some((f) => f.startsWith('tpm2-')), `swtpm kept its state in ${tpmDir}`);
  const swtpms = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(tpmDir);
      } catch {
        return false;
      }
    });
  assert.deepEqual(swtpms, [], 'no swtpm outlives its VM');
});

test('Secure Boot: QEMU runs the OVMF secure-boot build with SMM on q35, with its own variable store holding enrolled keys', async () => {
  const vm = await call('vm.create', { name: 'secure', memoryMiB: 256, firmware: 'uefi', secureBoot: true, display: 'none' });
  const id = vm.config.id;
  try {
    const started = await call('vm.start', { id });
    assert.equal(started.state, 'running');
    const argv = readFileSync(`/proc/${started.pid}/cmdline`, 'utf8').split('\0');
    assert.ok(
      argv.some((a) => a.includes('OVMF_CODE_4M.secboot.fd')),
      'the secure-boot firmware build',
    );
    assert.ok(argv.includes('q35,pflash0=fw-code,pflash1=fw-vars,smm=on'), `SMM on: ${argv.join(' ')}`);
    // The firmware runs (under TCG it takes a while to get anywhere): QEMU is still up a few seconds on.
    await new Promise((r) => setTimeout(r, 5000));
    assert.equal((await call('vm.get', { id })).state, 'running', 'QEMU accepted the Secure Boot machine and keeps running');
    const vars = join(dir, 'cfg', 'spindle', 'nvram', `${id}_VARS_SB.fd`);
    // A copy of the store with Microsoft's keys enrolled (the firmware may have written variables to it since).
    assert.equal(
      statSync(vars).size,
      statSync('/usr/share/OVMF/OVMF_VARS_4M.ms.fd').size,
      `its own copy of the enrolled-keys store at ${vars}`,
    );
  } finally {
    await call('vm.forceOff', { id }).catch(() => undefined);
  }
});
