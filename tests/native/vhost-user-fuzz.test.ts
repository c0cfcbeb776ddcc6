// Random vhost-user message streams against a live server, bounded. The property
// lives in tests/fuzz/targets/vhost-user-server.ts and is shared with `npm run fuzz`.
import { test } from '../lib/test.js';
import { serverStreams } from '../fuzz/targets/vhost-user-server.js';
import { runTarget } from '../fuzz/target.js';

test('random message streams never crash the server or leak fds; it keeps serving', async (t) => {
  const r = await runTarget(serverStreams, { numRuns: serverStreams.bounded });
  t.diagnostic(`vhost-user fuzz: ${r.runs} random streams in ${r.ms} ms`);
});
