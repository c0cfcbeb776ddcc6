// The guest checks as reusable suites: each group boots the real guest once and runs
// its checks inside it, against whatever disk server factory it is given (qemu-storage-daemon
// now, `spindle export` later). Data written by the guest is also checked on the host side.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from '../lib/test.js';
import type { AioMode, CacheMode } from '../../electron/shared/modes.js';
import { attachLoop, makeFile, tempDir, type LoopDevice } from '../lib/loop.js';
import { bootGuest, type Guest } from '../lib/qemu.js';
import { parseExportStats, type DiskServer, type DiskServerFactory } from './disk-server.js';

const MiB = 1 << 20;

export type Backing = 'file' | 'loop';
export type IoCheck = 'direct-io' | 'sector-512' | 'flush' | 'discard' | 'write-zeroes' | 'fio-verify' | 'ext4';
export const ALL_IO_CHECKS: readonly IoCheck[] = ['direct-io', 'sector-512', 'flush', 'discard', 'write-zeroes', 'fio-verify', 'ext4'];

export interface SuiteOptions {
  factory: DiskServerFactory;
  aio: AioMode;
  cache: CacheMode;
  /** 'file': an image file on the host's disk (tmpdir); 'loop': a loop device over a file in /dev/shm. */
  backing: Backing;
  /** Which checks of the single-disk group to run (default: all). */
  checks?: readonly IoCheck[];
  /**
   * Finally stop guest and server and check the server's exit line `stats {json}` (spindle
   * export prints one): it counted the guest's reads, writes, flushes, discards, and no errors.
   */
  checkServerStats?: boolean;
}

/** Host side: sha256 of `length` bytes of `path` at `offset` (a file or a block device). */
export function hostSha256(path: string, offset: number, length: number): string {
  const fd = openSync(path, 'r');
  try {
    const h = createHash('sha256');
    const buf = Buffer.alloc(Math.min(length, 4 * MiB));
    for (let done = 0; done < length;) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, length - done), offset + done);
      if (n === 0) throw new Error(`${path}: short read at ${offset + done}`);
      h.update(buf.subarray(0, n));
      done += n;
    }
    return h.digest('hex');
  } finally {
    closeSync(fd);
  }
}

const zeroSha256 = (length: number): string => createHash('sha256').update(Buffer.alloc(length)).digest('hex');

/** Parses the `sha256sum` lines a guest script printed, keyed by file name. */
const parseSums = (out: string): Map<string, string> => new Map([...out.matchAll(/^([0-9a-f]{64})\s+(\S+)$/gm)].map((m) => [m[2]!, m[1]!]));

/** Guest shell: the /dev name of the virtio disk with `sectors` 512-byte sectors. */
const findDisk = async (g: Guest, sectors: number): Promise<string> => {
  const out = await g.runOk(`for d in /sys/block/vd*; do [ "$(cat $d/size)" = ${sectors} ] && echo \${d##*/}; done; true`);
  const names = out.split('\n').filter(Boolean);
  assert.equal(names.length, 1, `expected one virtio disk of ${sectors} sectors, guest has: ${out}`);
  return names[0]!;
};

/** /sys/block/X/stat field 16: flush requests completed (Linux ≥ 5.5). */
const flushCount = async (g: Guest, dev: string): Promise<number> => {
  const fields = (await g.runOk(`cat /sys/block/${dev}/stat`)).trim().split(/\s+/);
  assert.ok(fields.length >= 17, `unexpected /sys/block/${dev}/stat: ${fields.join(' ')}`);
  return Number(fields[15]);
};

interface Backend {
  path: string;
  hostFile: string;
  loop?: LoopDevice;
  cleanup(): void;
}

function makeBacking(kind: Backing, sizeBytes: number, name: string, opts: { fill?: Buffer } = {}): Backend {
  const dir = tempDir(`spindle-guest-${name}-`, kind === 'loop' ? '/dev/shm' : undefined);
  const file = join(dir.path, `${name}.img`);
  makeFile(file, sizeBytes);
  if (opts.fill) writeFileSync(file, opts.fill);
  if (kind === 'file') return { path: file, hostFile: file, cleanup: dir.cleanup };
  const loop = attachLoop(file);
  return {
    path: loop.device,
    hostFile: file,
    loop,
    cleanup: () => {
      loop.detach();
      dir.cleanup();
    },
  };
}

/**
 * One VM, one 256 MiB disk: raw direct I/O at several offsets, 512-byte sectors, flush, discard,
 * fio with crc32c verification, then ext4 (mkfs, files, fsck, checksums after remount).
 */
export function singleDiskSuite(name: string, o: SuiteOptions): void {
  const checks = new Set(o.checks ?? ALL_IO_CHECKS);
  const size = 256 * MiB;
  describe(name, { concurrency: false }, () => {
    let backend: Backend | undefined;
    let server: DiskServer | undefined;
    let guest: Guest | undefined;
    let dev = '';
    const sockets = tempDir('spindle-sock-');
    const g = (): Guest => {
      assert.ok(guest, 'guest did not boot');
      return guest;
    };

    before(async () => {
      backend = makeBacking(o.backing, size, 'single');
      const socket = join(sockets.path, 'disk.sock');
      server = await o.factory({ path: backend.path, socket, aio: o.aio, cache: o.cache });
      guest = await bootGuest({ disks: [{ socket }] });
      dev = await findDisk(guest, size / 512);
    });

    after(async () => {
      try {
        await guest?.shutdown();
      } finally {
        try {
          await server?.stop();
        } finally {
          backend?.cleanup();
          sockets.cleanup();
        }
      }
    });

    if (checks.has('direct-io'))
      it('direct-I/O writes and reads back at several offsets, byte-exact on the host too', async () => {
        // [offset, block size, count]: start of disk, an odd 4k offset, a multi-segment 1 MiB request, the very end.
        const regions: [number, number, number][] = [
          [0, 65536, 4],
          [4096 * 12345, 4096, 7],
          [37 * MiB, MiB, 3],
          [size - 256 * 1024, 65536, 4],
        ];
        const script = ['set -e'].concat(
          regions.flatMap(([off, bs, count], i) => [
            `dd if=/dev/urandom of=/tmp/p${i} bs=${bs} count=${count} 2>/dev/null`,
            `dd if=/tmp/p${i} of=/dev/${dev} bs=${bs} seek=${off / bs} count=${count} oflag=direct conv=notrunc 2>/dev/null`,
            `dd if=/dev/${dev} of=/tmp/r${i} bs=${bs} skip=${off / bs} count=${count} iflag=direct 2>/dev/null`,
            `cd /tmp && sha256sum p${i} r${i}`,
          ]),
        );
        const sums = parseSums(await g().runOk(script.join('\n')));
        regions.forEach(([off, bs, count], i) => {
          const written = sums.get(`p${i}`);
          assert.ok(written, `no checksum for region ${i}`);
          assert.equal(sums.get(`r${i}`), written, `guest read back different data at offset ${off}`);
          assert.equal(hostSha256(backend!.path, off, bs * count), written, `host sees different data at offset ${off}`);
        });
      });

    if (checks.has('sector-512'))
      it('512-byte sector I/O touches exactly one sector', async () => {
        const out = await g().runOk(
          [
            'set -e',
            `cat /sys/block/${dev}/queue/logical_block_size`,
            `dd if=/dev/urandom of=/dev/${dev} bs=512 seek=1000 count=3 oflag=direct 2>/dev/null`,
            `dd if=/dev/urandom of=/tmp/s bs=512 count=1 2>/dev/null`,
            `dd if=/tmp/s of=/dev/${dev} bs=512 seek=1001 count=1 oflag=direct conv=notrunc 2>/dev/null`,
            ...[1000, 1001, 1002].map((s) => `dd if=/dev/${dev} of=/tmp/sec${s} bs=512 skip=${s} count=1 iflag=direct 2>/dev/null`),
            'cd /tmp && sha256sum s sec1000 sec1001 sec1002',
          ].join('\n'),
        );
        assert.match(out, /^512\n/, 'the disk should expose 512-byte logical blocks');
        const sums = parseSums(out);
        assert.equal(sums.get('sec1001'), sums.get('s'), 'sector 1001 does not hold what was written');
        for (const s of [1000, 1001, 1002])
          assert.equal(hostSha256(backend!.path, s * 512, 512), sums.get(`sec${s}`), `host sector ${s} differs`);
        assert.notEqual(sums.get('sec1000'), sums.get('s'));
        assert.notEqual(sums.get('sec1002'), sums.get('s'));
      });

    if (checks.has('flush'))
      it('flush requests reach the backend and succeed', async () => {
        const mode = (await g().runOk(`cat /sys/block/${dev}/queue/write_cache`)).trim();
        if (server!.writeCache !== null) {
          assert.equal(
            mode,
            server!.writeCache ? 'write back' : 'write through',
            `cache '${o.cache}' should show the guest ${server!.writeCache ? 'a' : 'no'} volatile write cache`,
          );
        }
        // With a write-through view the block layer drops flushes before the driver: turn the device's
        // write cache on through virtio-blk's cache_type (a CONFIG_WCE config write) so they go out.
        if (mode !== 'write back')
          await g().runOk(`echo 'write back' > /sys/block/${dev}/cache_type && grep -qx 'write back' /sys/block/${dev}/queue/write_cache`);
        const before = await flushCount(g(), dev);
        await g().runOk(
          `set -e; dd if=/dev/urandom of=/dev/${dev} bs=4096 seek=2000 count=16 conv=notrunc,fsync 2>/dev/null; sync; blockdev --flushbufs /dev/${dev}`,
        );
        const afterCount = await flushCount(g(), dev);
        if (mode !== 'write back') await g().runOk(`echo '${mode}' > /sys/block/${dev}/cache_type`);
        assert.ok(afterCount > before, `no flush request completed (before ${before}, after ${afterCount})`);
      });

    if (checks.has('discard'))
      it('discard: the range reads back as zeros and the host file loses those blocks', async () => {
        const off = 64 * MiB;
        const len = 8 * MiB;
        const max = Number((await g().runOk(`cat /sys/block/${dev}/queue/discard_max_bytes`)).trim());
        assert.ok(max > 0, 'the disk does not offer discard');
        await g().runOk(
          `dd if=/dev/urandom of=/dev/${dev} bs=1M seek=${off / MiB} count=${len / MiB} oflag=direct conv=notrunc 2>/dev/null`,
        );
        const blocksBefore = statSync(backend!.hostFile).blocks;
        const out = await g().runOk(
          [
            'set -e',
            `blkdiscard -o ${off} -l ${len} /dev/${dev}`,
            `dd if=/dev/${dev} of=/tmp/d bs=1M skip=${off / MiB} count=${len / MiB} iflag=direct 2>/dev/null`,
            'cd /tmp && sha256sum d',
          ].join('\n'),
        );
        assert.equal(parseSums(out).get('d'), zeroSha256(len), 'the discarded range does not read back as zeros in the guest');
        assert.equal(hostSha256(backend!.path, off, len), zeroSha256(len), 'the discarded range is not zero on the host');
        const blocksAfter = statSync(backend!.hostFile).blocks;
        assert.ok(
          blocksAfter <= blocksBefore - len / 512 / 2,
          `host file kept its blocks (${blocksBefore} → ${blocksAfter} sectors): nothing was punched`,
        );
      });

    if (checks.has('write-zeroes'))
      it('write-zeroes: the range reads back as zeros in the guest and on the host', async () => {
        const off = 80 * MiB;
        const len = 4 * MiB;
        const max = Number((await g().runOk(`cat /sys/block/${dev}/queue/write_zeroes_max_bytes`)).trim());
        assert.ok(max > 0, 'the disk does not offer WRITE_ZEROES (blkdiscard -z would silently write zero pages instead)');
        const out = await g().runOk(
          [
            'set -e',
            `dd if=/dev/urandom of=/dev/${dev} bs=1M seek=${off / MiB} count=${len / MiB} oflag=direct conv=notrunc 2>/dev/null`,
            `/usr/sbin/blkdiscard -z -o ${off} -l ${len} /dev/${dev}`,
            `dd if=/dev/${dev} of=/tmp/z bs=1M skip=${off / MiB} count=${len / MiB} iflag=direct 2>/dev/null`,
            'cd /tmp && sha256sum z',
          ].join('\n'),
        );
        assert.equal(parseSums(out).get('z'), zeroSha256(len), 'the zeroed range does not read back as zeros in the guest');
        assert.equal(hostSha256(backend!.path, off, len), zeroSha256(len), 'the zeroed range is not zero on the host');
      });

    if (checks.has('fio-verify'))
      it('fio random writes verify with crc32c inside the guest', async () => {
        const r = await g().run(
          `/usr/bin/fio --name=verify --filename=/dev/${dev} --offset=96M --size=16M --rw=randwrite --bs=4k --ioengine=libaio --iodepth=16 ` +
            '--direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 --norandommap=0 --output-format=normal',
          { timeoutMs: 600_000 },
        );
        assert.equal(r.code, 0, `fio failed:\n${r.output}`);
        assert.match(r.output, /err= 0/, `fio reported errors:\n${r.output}`);
        assert.doesNotMatch(r.output, /verify: bad|crc32c: verify failed/i, r.output);
      });

    if (checks.has('ext4'))
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
        // The host sees the same clean filesystem through the backend (read-only check).
        execFileSync('e2fsck', ['-fn', backend!.path], { stdio: 'pipe' });
        await g().runOk(
          [
            'set -e',
            `mount -t ext4 /dev/${dev} /mnt/t`,
            'cd /mnt/t',
            'sha256sum -c /tmp/sums > /tmp/check',
            'test "$(wc -l < /tmp/check)" = 41',
            'cd /',
            'umount /mnt/t',
          ].join('\n'),
        );
      });

    if (o.checkServerStats)
      it("the server counted the guest's I/O and no errors (exit line stats {json})", async () => {
        await g().shutdown();
        const { code, output } = await server!.stop();
        assert.equal(code, 0, `the server exited with ${code}:\n${output}`);
        const stats = parseExportStats(output);
        assert.ok(stats, `no 'stats {json}' line in the server's output:\n${output}`);
        const ops = (k: string): number => Number((stats[k] as { ops?: number } | undefined)?.ops ?? NaN);
        assert.ok(ops('read') > 0 && ops('write') > 0, `reads/writes not counted: ${JSON.stringify(stats)}`);
        if (checks.has('flush') || checks.has('ext4')) assert.ok(ops('flush') > 0, `flushes not counted: ${JSON.stringify(stats)}`);
        if (checks.has('discard')) assert.ok(ops('discard') > 0, `discards not counted: ${JSON.stringify(stats)}`);
        assert.equal(stats.errors, 0, `the server counted errors: ${JSON.stringify(stats)}`);
      });
  });
}

/**
 * One VM with 2 vCPUs and two disks: a 2-queue writable disk and a read-only disk pre-filled on
 * the host, each with its own serial.
 */
export function twoDiskSuite(name: string, o: Omit<SuiteOptions, 'checks'>): void {
  const sizeA = 128 * MiB;
  const sizeB = 64 * MiB;
  const content = Buffer.alloc(sizeB);
  for (let i = 0; i < sizeB; i += 4) content.writeUInt32LE((i * 2654435761) >>> 0, i);
  const contentSha = createHash('sha256').update(content).digest('hex');
  describe(name, { concurrency: false }, () => {
    let a: Backend | undefined;
    let b: Backend | undefined;
    const servers: DiskServer[] = [];
    let guest: Guest | undefined;
    let devA = '';
    let devB = '';
    const sockets = tempDir('spindle-sock-');
    const g = (): Guest => {
      assert.ok(guest, 'guest did not boot');
      return guest;
    };

    before(async () => {
      a = makeBacking(o.backing, sizeA, 'mq');
      b = makeBacking(o.backing, sizeB, 'ro', { fill: content });
      const dir = sockets.path;
      servers.push(
        await o.factory({ path: a.path, socket: join(dir, 'a.sock'), aio: o.aio, cache: o.cache, queues: 2, serial: 'spindle-disk-a' }),
      );
      servers.push(
        await o.factory({ path: b.path, socket: join(dir, 'b.sock'), aio: o.aio, cache: o.cache, readOnly: true, serial: 'spindle-ro-b' }),
      );
      guest = await bootGuest({ cpus: 2, disks: [{ socket: join(dir, 'a.sock'), queues: 2 }, { socket: join(dir, 'b.sock') }] });
      devA = await findDisk(guest, sizeA / 512);
      devB = await findDisk(guest, sizeB / 512);
    });

    after(async () => {
      try {
        await guest?.shutdown();
      } finally {
        for (const s of servers) await s.stop().catch(() => undefined);
        a?.cleanup();
        b?.cleanup();
        sockets.cleanup();
      }
    });

    it('two disks in one VM, each with its own data', async () => {
      assert.notEqual(devA, devB);
      const out = await g().runOk(
        `set -e; dd if=/dev/urandom of=/dev/${devA} bs=1M count=4 oflag=direct 2>/dev/null; dd if=/dev/${devA} of=/tmp/a bs=1M count=4 iflag=direct 2>/dev/null; dd if=/dev/${devB} of=/tmp/b bs=1M iflag=direct 2>/dev/null; cd /tmp && sha256sum a b`,
      );
      const sums = parseSums(out);
      assert.equal(sums.get('b'), contentSha, 'the second disk does not show the host file content');
      assert.equal(hostSha256(a!.path, 0, 4 * MiB), sums.get('a'), 'the first disk did not reach its own backing file');
    });

    it('a 2-queue disk with 2 vCPUs has 2 blk-mq queues and I/O on both CPUs verifies', async () => {
      const queues = (await g().runOk(`ls /sys/block/${devA}/mq`)).split(/\s+/).filter(Boolean);
      assert.equal(queues.length, 2, `expected 2 hardware queues, got: ${queues.join(' ')}`);
      const cpus = (await g().runOk(`cat /sys/block/${devA}/mq/*/cpu_list`))
        .split(/[\s,]+/)
        .filter(Boolean)
        .sort();
      assert.deepEqual(cpus, ['0', '1'], 'each vCPU should map to a queue');
      const r = await g().run(
        `/usr/bin/fio --name=mq --filename=/dev/${devA} --size=8M --rw=randwrite --bs=4k --ioengine=libaio --iodepth=8 --direct=1 ` +
          '--numjobs=2 --cpus_allowed=0-1 --cpus_allowed_policy=split --offset_increment=16M --verify=crc32c --do_verify=1 --verify_fatal=1',
        { timeoutMs: 600_000 },
      );
      assert.equal(r.code, 0, `fio failed:\n${r.output}`);
      assert.match(r.output, /err= 0/, r.output);
    });

    it('a read-only disk refuses writes and keeps its data', async () => {
      assert.equal((await g().runOk(`cat /sys/block/${devB}/ro`)).trim(), '1', 'the guest should see the disk read-only');
      const w = await g().run(`dd if=/dev/zero of=/dev/${devB} bs=4096 count=1 oflag=direct`);
      assert.notEqual(w.code, 0, `a write to the read-only disk succeeded:\n${w.output}`);
      assert.equal(hostSha256(b!.path, 0, sizeB), contentSha, 'the read-only disk changed on the host');
    });

    it('each disk shows its serial in /sys/block/vdX/serial', async (t) => {
      const [sa, sb] = servers;
      const readA = (await g().runOk(`cat /sys/block/${devA}/serial`)).trim();
      const readB = (await g().runOk(`cat /sys/block/${devB}/serial`)).trim();
      if (sa!.serial === null || sb!.serial === null) t.diagnostic('this server cannot set serials; checking only that they read');
      if (sa!.serial !== null) assert.equal(readA, sa!.serial);
      if (sb!.serial !== null) assert.equal(readB, sb!.serial);
      assert.ok(readA.length > 0 && readA.length <= 20, `serial ${JSON.stringify(readA)}`);
    });
  });
}

/**
 * The disk server dies under a running guest (SIGKILL) and a new one takes over the same socket
 * while fio writes and verifies (crc32c) in a loop: QEMU reconnects (reconnect=1), the guest must
 * see no I/O error and no verify failure.
 */
export function serverRestartSuite(name: string, o: Omit<SuiteOptions, 'checks' | 'checkServerStats'> & { kills?: number }): void {
  const size = 128 * MiB;
  describe(name, { concurrency: false }, () => {
    let backend: Backend | undefined;
    let server: DiskServer | undefined;
    let guest: Guest | undefined;
    const sockets = tempDir('spindle-sock-');
    const socket = join(sockets.path, 'disk.sock');
    const serverOpts = () => ({ path: backend!.path, socket, aio: o.aio, cache: o.cache });

    before(async () => {
      backend = makeBacking(o.backing, size, 'restart');
      server = await o.factory(serverOpts());
      guest = await bootGuest({ disks: [{ socket }] });
    });

    after(async () => {
      try {
        await guest?.shutdown();
      } finally {
        try {
          await server?.stop();
        } finally {
          backend?.cleanup();
          sockets.cleanup();
        }
      }
    });

    it(`guest fio with crc32c verify survives ${o.kills ?? 2} SIGKILLs of its disk server`, async () => {
      const g = guest!;
      const dev = await findDisk(g, size / 512);
      // Each pass writes and verifies its own region; the loop runs until the host says stop, so
      // the kills always land in the middle of guest I/O.
      await g.runOk(
        [
          'rm -f /tmp/stop /tmp/loop.log',
          `(i=0; while [ ! -e /tmp/stop ]; do
            /usr/bin/fio --name=v$i --filename=/dev/${dev} --offset=$(( (i % 4) * 16 ))M --size=16M --rw=randwrite --bs=4k --ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 > /tmp/fio.out 2>&1 || { echo "FAIL pass $i"; cat /tmp/fio.out; break; }
            i=$((i + 1)); echo "pass $i ok"
          done; echo finished) > /tmp/loop.log 2>&1 &`,
        ].join('\n'),
      );
      const passes = async (): Promise<number> => Number((await g.runOk('grep -c "ok$" /tmp/loop.log || true')).trim() || 0);
      for (let k = 0; k < (o.kills ?? 2); k++) {
        await new Promise((r) => setTimeout(r, 1500));
        const running = await g.run('grep -q finished /tmp/loop.log');
        assert.notEqual(running.code, 0, `the fio loop ended before kill ${k + 1}:\n${await g.runOk('cat /tmp/loop.log')}`);
        process.kill(server!.pid, 'SIGKILL');
        await server!.stop();
        await new Promise((r) => setTimeout(r, 500));
        server = await o.factory(serverOpts());
      }
      const before = await passes();
      // Let at least one more full pass run on the last server, then stop the loop (generous: a
      // pass on a loaded 2-core machine can take minutes; the failure below says what hung).
      const deadline = Date.now() + 300_000;
      while ((await passes()) < before + 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1000));
      await g.runOk('touch /tmp/stop');
      while (Date.now() < deadline && (await g.run('grep -q finished /tmp/loop.log')).code !== 0)
        await new Promise((r) => setTimeout(r, 1000));
      const log = await g.runOk('cat /tmp/loop.log');
      if (!/finished/.test(log)) {
        const hung = await g.run('cat /proc/$(pidof fio | cut -d" " -f1)/stack 2>/dev/null; cat /sys/block/*/inflight; dmesg | tail -20');
        assert.fail(
          `the guest's fio loop did not finish within 5 minutes of the last restart (I/O lost across the restart?)\n--- loop log ---\n${log}\n--- guest state ---\n${hung.output}`,
        );
      }
      assert.doesNotMatch(log, /FAIL/, `guest I/O failed across a server restart:\n${log}`);
      assert.ok((await passes()) >= 2, `too few fio passes to mean anything:\n${log}`);
    });
  });
}
