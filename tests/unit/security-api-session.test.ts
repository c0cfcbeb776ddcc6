// Hostile wire messages to the API session (serve's WebSocket and Electron's IPC
// share it) never throw and are answered with sentences. Property: tests/fuzz/targets/api-session.ts.
import { test } from '../lib/test.js';
import { apiSessionTarget } from '../fuzz/targets/api-session.js';
import { runTarget } from '../fuzz/target.js';

test('hostile wire messages: receive() never throws, refusals are sentences, close() ends every subscription', async (t) => {
  const r = await runTarget(apiSessionTarget, { numRuns: apiSessionTarget.bounded, seed: 5150 });
  t.diagnostic(`${r.runs} cases in ${r.ms} ms: ${JSON.stringify(r.stats)}`);
});
