// A synthetic guest for `npm run soak`: one process (like one QEMU) driving several disks at full
// load until its deadline, in rounds that cycle through workloads; every few rounds a verify
// round writes a pattern and reads it back. One JSON line per finished round on stdout.
// usage: node dist/tests/soak/guest.js <deadline-epoch-ms> <socket>...
import { runLoadgen, type LoadgenOptions } from '../../electron/tools/loadgen.js';

const deadline = Number(process.argv[2]);
const sockets = process.argv.slice(3);
const WORKLOADS: Partial<LoadgenOptions>[] = [
  { rw: 'randrw', bs: 4096, iodepth: 16 },
  { rw: 'randwrite', bs: 16384, iodepth: 8 },
  { rw: 'randread', bs: 4096, iodepth: 32 },
  { rw: 'read', bs: 131072, iodepth: 4 },
  { rw: 'randwrite', bs: 4096, iodepth: 16, verify: true, size: 4 << 20 },
];
const ROUND_SEC = 5;

async function drive(socket: string, index: number): Promise<void> {
  for (let round = 0; Date.now() < deadline - 500; round++) {
    const w = WORKLOADS[(round + index) % WORKLOADS.length]!;
    const opts: LoadgenOptions = {
      socket,
      rw: 'randrw',
      bs: 4096,
      iodepth: 16,
      queues: 1,
      size: 0,
      verify: false,
      verifyOnly: false,
      rwmixread: 60,
      seed: round + 1,
      ...w,
      runtimeSec: Math.max(0.2, Math.min(ROUND_SEC, (deadline - Date.now()) / 1000)),
    };
    const at = Date.now();
    try {
      const r = await runLoadgen(opts);
      console.log(
        JSON.stringify({
          socket,
          round,
          at,
          rw: opts.rw,
          verify: opts.verify,
          ios: r.ios,
          errors: r.errors,
          mismatches: r.verify?.mismatches ?? 0,
          iops: r.iops,
          mbps: r.mbps,
          p99Us: r.latencyUs.p99,
        }),
      );
    } catch (err) {
      console.log(JSON.stringify({ socket, round, at, rw: opts.rw, failed: (err as Error).message }));
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

await Promise.all(sockets.map((s, i) => drive(s, i)));
