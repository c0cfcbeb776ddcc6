// The local API socket (CLI -> running backend) takes any bytes a local process
// sends without the backend throwing: non-object JSON (`null` used to crash it), broken JSON,
// oversized lines. Random lines run through the shared target in tests/fuzz/targets/local-socket.ts.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { localSocketTarget, exchange } from '../fuzz/targets/local-socket.js';
import { runTarget } from '../fuzz/target.js';

test('non-object JSON, broken JSON and an oversized line are refused; the backend keeps answering', async () => {
  const ctx = await localSocketTarget.setup!();
  try {
    const { replies } = await exchange(ctx.path, 'null\n[]\n42\n"vm.list"\n{"method":\n', 5);
    assert.deepEqual(
      replies.map((r) => (r as { error: { message: string } }).error.message),
      [
        'The request must be a JSON object with method and params.',
        'The request must be a JSON object with method and params.',
        'The request must be a JSON object with method and params.',
        'The request must be a JSON object with method and params.',
        'The request is not JSON.',
      ],
    );
    const big = await exchange(ctx.path, 'x'.repeat((1 << 20) + 10), 1);
    assert.ok(big.closed, 'a line over 1 MiB closes that connection');
    const { replies: ok } = await exchange(ctx.path, '{"id":"a","method":"vm.list","params":{}}\n', 1);
    assert.deepEqual(ok, [{ id: 'a', ok: true, result: { vms: [], problems: [] } }]);
  } finally {
    await localSocketTarget.teardown!(ctx);
  }
});

test('random lines: one sentence or result per line, never a crash', async (t) => {
  const r = await runTarget(localSocketTarget, { numRuns: localSocketTarget.bounded, seed: 77 });
  t.diagnostic(`${r.runs} cases in ${r.ms} ms`);
});
