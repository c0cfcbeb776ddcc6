// The engine's submission records are doubles read in C++: every field is checked before it is
// converted (a cast of NaN, -1 or 1e300 to an integer is undefined behaviour). A record with a bad
// field completes with -EINVAL (an unknown buffer with -EFAULT), the others in the same batch run
// normally; a batch whose framing (tag, segment count, request count) cannot be trusted is refused
// whole with a RangeError and nothing is submitted. Crafted batches, through the AioEngine class,
// for each engine kind.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { closeSync, constants, openSync } from 'node:fs';
import { AioEngine, SubmissionQueue } from '../../electron/dataplane/block/engine.js';
import { BlockOp } from '../../electron/dataplane/block/types.js';
import type { AioMode } from '../../electron/shared/modes.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { waitFor } from '../lib/wait.js';

const EINVAL = -22;
const EFAULT = -14;
const BUF = 1;

/** Bad records: [tag, what, fill(queue)] — each fills exactly one record. */
const BAD: Array<[number, string, (q: SubmissionQueue) => void]> = [
  [10, 'op NaN', (q) => { q.begin(10, NaN as BlockOp, 0); q.segment(BUF, 0, 4096); }],
  [11, 'op 1.5', (q) => { q.begin(11, 1.5 as BlockOp, 0); q.segment(BUF, 0, 4096); }],
  [12, 'op -1', (q) => { q.begin(12, -1 as BlockOp, 0); q.segment(BUF, 0, 4096); }],
  [13, 'offset -1', (q) => { q.begin(13, BlockOp.Write, -1); q.segment(BUF, 0, 4096); }],
  [14, 'offset NaN', (q) => { q.begin(14, BlockOp.Read, NaN); q.segment(BUF, 0, 4096); }],
  [15, 'offset 1e300', (q) => { q.begin(15, BlockOp.Write, 1e300); q.segment(BUF, 0, 4096); }],
  [16, 'offset 2^63', (q) => { q.begin(16, BlockOp.Read, 2 ** 63); q.segment(BUF, 0, 4096); }],
  [17, 'offset 0.5', (q) => { q.begin(17, BlockOp.Read, 0.5); q.segment(BUF, 0, 4096); }],
  [18, 'discard length 1e300', (q) => q.begin(18, BlockOp.Discard, 0, 1e300)],
  [19, 'write-zeroes length -4096', (q) => q.begin(19, BlockOp.WriteZeroes, 0, -4096)],
  [20, 'discard offset + length past 2^63', (q) => q.begin(20, BlockOp.Discard, 2 ** 62, 2 ** 62 + 2 ** 62)],
  [21, 'flags -1', (q) => { q.begin(21, BlockOp.Write, 0, 0, -1); q.segment(BUF, 0, 4096); }],
  [22, 'flags 1e300', (q) => { q.begin(22, BlockOp.Write, 0, 0, 1e300); q.segment(BUF, 0, 4096); }],
  [23, 'flags NaN', (q) => { q.begin(23, BlockOp.Write, 0, 0, NaN); q.segment(BUF, 0, 4096); }],
  [24, 'an unknown flag bit', (q) => { q.begin(24, BlockOp.Write, 0, 0, 2); q.segment(BUF, 0, 4096); }],
  [25, 'bufferId NaN', (q) => { q.begin(25, BlockOp.Read, 0); q.segment(NaN, 0, 4096); }],
  [26, 'bufferId -1', (q) => { q.begin(26, BlockOp.Read, 0); q.segment(-1, 0, 4096); }],
  [27, 'bufferOffset -1', (q) => { q.begin(27, BlockOp.Read, 0); q.segment(BUF, -1, 4096); }],
  [28, 'bufferOffset 1e300', (q) => { q.begin(28, BlockOp.Write, 0); q.segment(BUF, 1e300, 4096); }],
  [29, 'segment length NaN', (q) => { q.begin(29, BlockOp.Write, 0); q.segment(BUF, 0, NaN); }],
  [30, 'segment length Infinity', (q) => { q.begin(30, BlockOp.Read, 0); q.segment(BUF, 0, Infinity); }],
  [31, 'a good segment then a bad one', (q) => { q.begin(31, BlockOp.Write, 0); q.segment(BUF, 0, 512); q.segment(BUF, 0.25, 512); }],
];

for (const kind of ['threads', 'native', 'io_uring'] as AioMode[]) {
  test(`${kind}: crafted submission records with NaN, -1, 1e300… complete with EINVAL; good ones in the same batch run`, async (t) => {
    const dir = tempDir('spindle-submit-', '/var/tmp');
    t.after(() => dir.cleanup());
    const path = makeFile(`${dir.path}/a.img`, 1 << 20);
    const fd = openSync(path, constants.O_RDWR | (kind === 'native' ? constants.O_DIRECT : 0));
    const results = new Map<number, number>();
    const engine = new AioEngine({
      kind, fd, isBlock: false, alignment: 512,
      onComplete: (tags, res, count) => { for (let i = 0; i < count; i++) results.set(tags[i]!, res[i]!); },
    });
    try {
      const mem = new Uint8Array(8192).fill(0x5a);
      engine.registerBuffer(BUF, mem);
      const q = new SubmissionQueue(64);
      q.begin(1, BlockOp.Write, 4096);  // good, before the bad ones
      q.segment(BUF, 0, 4096);
      for (const [, , fill] of BAD) fill(q);
      q.begin(2, BlockOp.Write, 8192);  // good, after them
      q.segment(BUF, 4096, 4096);
      q.begin(3, BlockOp.Read, 0);       // an unknown buffer is a fault, not a crash
      q.segment(77, 0, 4096);
      engine.submit(q);
      const want = BAD.length + 3;
      await waitFor(() => results.size >= want, { timeoutMs: 60_000, what: `${want} completions`, detail: () => `${results.size} arrived` });
      assert.equal(results.size, want, 'every record completed once');
      for (const [tag, what] of BAD) assert.equal(results.get(tag), EINVAL, `${what}: EINVAL`);
      assert.equal(results.get(3), EFAULT, 'unknown buffer: EFAULT');
      assert.equal(results.get(1), 0, 'the good write before the bad records');
      assert.equal(results.get(2), 0, 'the good write after them');

      // Framing that cannot be trusted: the whole batch is refused, nothing is submitted.
      const framing: Array<[string, (q: SubmissionQueue) => void]> = [
        ['tag NaN', (q) => { q.begin(NaN, BlockOp.Read, 0); q.segment(BUF, 0, 512); }],
        ['tag -1', (q) => { q.begin(-1, BlockOp.Read, 0); q.segment(BUF, 0, 512); }],
        ['tag 2^32', (q) => { q.begin(2 ** 32, BlockOp.Read, 0); q.segment(BUF, 0, 512); }],
        ['segment count NaN', (q) => { q.begin(5, BlockOp.Read, 0); q.segment(BUF, 0, 512); q.words[5] = NaN; }],
        ['segment count -1', (q) => { q.begin(5, BlockOp.Read, 0); q.words[5] = -1; }],
        ['segment count 1e300', (q) => { q.begin(5, BlockOp.Read, 0); q.words[5] = 1e300; }],
        ['segment count 70000', (q) => { q.begin(5, BlockOp.Read, 0); q.words[5] = 70000; }],
        ['request count 1.5', (q) => { q.begin(5, BlockOp.Read, 0); q.segment(BUF, 0, 512); q.count = 1.5; }],
        ['request count NaN', (q) => { q.begin(5, BlockOp.Read, 0); q.segment(BUF, 0, 512); q.count = NaN; }],
      ];
      results.clear();
      for (const [what, fill] of framing) {
        q.begin(4, BlockOp.Read, 0);  // a good record first: it must not run either
        q.segment(BUF, 0, 512);
        const before = q.length;
        fill(q);
        assert.ok(q.length >= before);
        assert.throws(() => engine.submit(q), RangeError, what);
        assert.equal(engine.inFlight, 0, `${what}: nothing submitted`);
      }
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(results.size, 0, 'no completion from a refused batch');
      await engine.drain();
    } finally {
      await engine.close();
      closeSync(fd);
    }
  });
}
