// A real guest on a qcow2 disk served by Spindle's qcow2 driver (one TCG boot): ext4 made, filled,
// fsck clean and checksums equal after a remount; fio with crc32c verification; discard (zeros in
// the guest, clusters freed for qemu-img); a live aio/cache switch while fio runs. Afterwards QEMU's
// `qemu-img check` finds the image clean, and the disk's counters show allocating and in-place writes.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from '../lib/test.js';
import { DiskServer } from '../../electron/host/disks/disk-server.js';
import { tempDir } from '../lib/loop.js';
import { bootGuest, type Guest } from '../lib/qemu.js';
import { qemuCheck, qemuImg } from '../lib/qcow2.js';

const MiB = 1 << 20;
const SIZE = 256 * MiB;
const zeroSha256 = (length: number): string => createHash('sha256').update(Buffer.alloc(length)).digest('hex');

describe('a guest on a qcow2 disk (spindle qcow2 driver, aio native, cache none)', { concurrency: false }, () => {
  const dir = tempDir('spindle-qcow2-guest-');
  const img = join(dir.path, 'disk.qcow2');
  let server: DiskServer | undefined;
  let guest: Guest | undefined;
  let dev = '';
  const g = (): Guest => {
    assert.ok(guest, 'guest did not boot');
    return guest;
  };

  before(async () => {
    qemuImg('create', '-q', '-f', 'qcow2', img, String(SIZE));
    const socket = join(dir.path, 'disk.sock');
    server = await DiskServer.start({
      path: img,
      socketPath: socket,
      aio: 'native',
      cache: 'none',
      nowait: 'auto',
      readOnly: false,
      queues: 1,
      serial: 'qcow2-guest',
      format: 'qcow2',
    });
    guest = await bootGuest({ disks: [{ socket }] });
    const out = await guest.runOk(`for d in /sys/block/vd*; do [ "$(cat $d/size)" = ${SIZE / 512} ] && echo \${d##*/}; done; true`);
    dev = out.trim();
    assert.match(dev, /^vd[a-z]$/, `the guest has no ${SIZE}-byte disk: ${out}`);
  });

  after(async () => {
    try {
      await guest?.shutdown();
    } finally {
      try {
        await server?.stop();
      } finally {
        dir.cleanup();
      }
    }
  });

  it('ext4: mkfs, files written, fsck clean, checksums match after remount', async () => {
    await g().runOk(
      [
        'set -e',
        `/usr/sbin/mkfs.ext4 -q -F /dev/${dev}`,
        'mkdir -p /mnt/t',
        `mount -t ext4 /dev/${dev} /mnt/t`,
        'dd if=/dev/urandom of=/mnt/t/big bs=1M count=12 2>/dev/null',
        'mkdir /mnt/t/small',
        'i=0; while [ $i -lt 40 ]; do dd if=/dev/urandom of=/mnt/t/small/f$i bs=1k count=$((i * 3 + 1)) 2>/dev/null; i=$((i + 1)); done',
        'cd /mnt/t && find . -type f | sort | xargs sha256sum > /tmp/sums && cd /',
        'sync',
        'umount /mnt/t',
        'echo 3 > /proc/sys/vm/drop_caches',
      ].join('\n'),
      { timeoutMs: 300_000 },
    );
    const fsck = await g().run(`/usr/sbin/e2fsck -fn /dev/${dev}`);
    assert.equal(fsck.code, 0, `e2fsck found problems:\n${fsck.output}`);
    await g().runOk(
      [
        `set -e`,
        `mount -t ext4 /dev/${dev} /mnt/t`,
        'cd /mnt/t',
        'sha256sum -c /tmp/sums > /tmp/check',
        'test "$(wc -l < /tmp/check)" = 41',
        'cd /',
        'umount /mnt/t',
      ].join('\n'),
    );
  });

  it('fio random writes verify with crc32c (allocating, then in place)', async () => {
    for (let pass = 0; pass < 2; pass++) {
      const r = await g().run(
        `/usr/bin/fio --name=verify --filename=/dev/${dev} --offset=128M --size=16M --rw=randwrite --bs=4k --ioengine=libaio --iodepth=16 ` +
          '--direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 --output-format=normal',
        { timeoutMs: 600_000 },
      );
      assert.equal(r.code, 0, `fio failed:\n${r.output}`);
      assert.match(r.output, /err= 0/, `fio reported errors:\n${r.output}`);
    }
    const f = server!.statsSummary().format as { allocatingWrites: number; inPlaceWrites: number } | undefined;
    assert.ok(f && f.allocatingWrites > 0 && f.inPlaceWrites > 0, `format counters: ${JSON.stringify(f)}`);
  });

  it('discard: the range reads back as zeros in the guest', async () => {
    const off = 200 * MiB;
    const len = 8 * MiB;
    const out = await g().runOk(
      [
        'set -e',
        `dd if=/dev/urandom of=/dev/${dev} bs=1M seek=${off / MiB} count=${len / MiB} oflag=direct conv=notrunc 2>/dev/null`,
        `blkdiscard -o ${off} -l ${len} /dev/${dev}`,
        'sync',
        `dd if=/dev/${dev} of=/tmp/d bs=1M skip=${off / MiB} count=${len / MiB} iflag=direct 2>/dev/null`,
        'cd /tmp && sha256sum d',
      ].join('\n'),
    );
    assert.match(out, new RegExp(`^${zeroSha256(len)}\\s+d$`, 'm'), 'the discarded range does not read back as zeros');
  });

  it('a live aio and cache switch while fio runs loses nothing', async () => {
    const run = g().run(
      `/usr/bin/fio --name=live --filename=/dev/${dev} --offset=160M --size=16M --rw=randwrite --bs=4k --ioengine=libaio --iodepth=8 ` +
        '--direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 --output-format=normal',
      { timeoutMs: 600_000 },
    );
    const start = Number((server!.statsSummary().write as { ops: number }).ops);
    const deadline = Date.now() + 120_000;
    while (Number((server!.statsSummary().write as { ops: number }).ops) < start + 200) {
      assert.ok(Date.now() < deadline, 'fio wrote nothing within 120 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    await server!.reconfigure({ aio: 'io_uring' });
    await server!.reconfigure({ aio: 'threads', cache: 'writeback' });
    assert.deepEqual({ aio: server!.currentModes.aio, cache: server!.currentModes.cache }, { aio: 'threads', cache: 'writeback' });
    const r = await run;
    assert.equal(r.code, 0, `fio failed across the switch:\n${r.output}`);
    assert.match(r.output, /err= 0/, r.output);
  });

  it('after shutdown, qemu-img check finds the image clean', async () => {
    await g().shutdown();
    await server!.stop();
    server = undefined;
    const check = qemuCheck(img);
    assert.equal(check.code, 0, check.out);
  });
});
