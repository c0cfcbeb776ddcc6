// `spindle bench-engines PATH --overwrite` (README, "Command line"): each engine on a real file,
// 4k random read/write QD32 and 1M sequential read/write QD4, as JSON and as a table; without
// --overwrite it refuses with a sentence and leaves the file alone.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeFile, tempDir } from '../lib/loop.js';

const bin = fileURLToPath(new URL('../../../bin/spindle.js', import.meta.url));
const spindle = (args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 240_000, killSignal: 'SIGKILL' });
const md5 = (path: string) => createHash('md5').update(readFileSync(path)).digest('hex');

test('bench-engines measures every engine on a file, refuses without --overwrite', async (t) => {
  const dir = tempDir('spindle-bench-engines-', '/var/tmp'); // O_DIRECT needs a real disk
  t.after(() => dir.cleanup());
  const img = makeFile(join(dir.path, 'b.img'), 32 << 20, { written: true });

  const before = md5(img);
  const refused = spindle(['bench-engines', img]);
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, /bench-engines writes over the data in .*b\.img; pass --overwrite to confirm\./);
  assert.equal(md5(img), before, 'the refused run wrote nothing');

  const r = spindle(['bench-engines', img, '--overwrite', '--json', '--runtime', '0.3']);
  assert.equal(r.status, 0, `${r.error?.message ?? ''}${r.stderr}`);
  const out = JSON.parse(r.stdout) as { path: string; results: { engine: string; workload: string; iops: number; mbPerSec: number; ios: number }[]; skipped: unknown[] };
  assert.equal(out.path, img);
  assert.deepEqual(out.skipped, [], 'every engine ran on this file');
  assert.deepEqual(
    out.results.map((x) => `${x.engine} ${x.workload}`),
    ['threads', 'native', 'native+nowait', 'io_uring'].flatMap((e) => ['4k-randread-qd32', '4k-randwrite-qd32', '1m-seqread-qd4', '1m-seqwrite-qd4'].map((w) => `${e} ${w}`)),
  );
  for (const x of out.results) assert.ok(x.ios > 0 && x.iops > 0 && x.mbPerSec > 0, `${x.engine} ${x.workload}: ${JSON.stringify(x)}`);

  const table = spindle(['bench-engines', img, '--overwrite', '--runtime', '0.2']);
  assert.equal(table.status, 0, table.stderr);
  assert.match(table.stdout, /^engine\s+workload\s+IOPS\s+MB\/s\s+p99 µs\s+CPU s\s+fallbacks$/m);
  assert.match(table.stdout, /^io_uring\s+1m-seqwrite-qd4\s+\d+\s+[\d.]+\s+\d+/m);
});
