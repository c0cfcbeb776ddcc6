// Hostile params to every API method and stream end in a sentence, never a crash.
// The property lives in tests/fuzz/targets/api-router.ts (shared with `npm run fuzz`).
import { test } from '../lib/test.js';
import { apiRouterTarget } from '../fuzz/targets/api-router.js';
import { runTarget } from '../fuzz/target.js';

test('hostile params to every router method and stream: a SpindleError sentence or an answer, nothing else', async (t) => {
  const r = await runTarget(apiRouterTarget, { numRuns: apiRouterTarget.bounded });
  t.diagnostic(`${r.runs} cases in ${r.ms} ms: ${JSON.stringify(r.stats)}`);
});
