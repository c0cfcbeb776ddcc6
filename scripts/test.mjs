// Runs the test suites with Node's test runner on the compiled tests in dist/tests.
// usage: node scripts/test.mjs [unit|native|guest|e2e ...]   (default: all, in that order)
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const suites = ['unit', 'native', 'guest', 'e2e'];
const wanted = process.argv.slice(2).length ? process.argv.slice(2) : suites;
const files = (dir) =>
  !existsSync(dir)
    ? []
    : readdirSync(dir)
        .flatMap((n) => {
          const p = join(dir, n);
          return statSync(p).isDirectory() ? files(p) : p.endsWith('.test.js') ? [p] : [];
        })
        .sort();

const list = wanted.flatMap((s) => files(join('dist/tests', s)));
if (!list.length) {
  console.error(`no compiled tests found for: ${wanted.join(' ')} (run npm run build:ts)`);
  process.exit(1);
}
// The renderer's component tests run under vitest (Svelte + jsdom), before the node suites.
if (wanted.includes('unit')) {
  const v = spawnSync(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', '--config', 'renderer/vitest.config.ts'], {
    stdio: 'inherit',
  });
  if (v.status !== 0) {
    console.error('renderer component tests failed');
    process.exit(v.status ?? 1);
  }
}
// The engine's C++ unit tests (scripts/test-native-units.mjs) open the native suite.
if (wanted.includes('native')) {
  const u = spawnSync(process.execPath, ['scripts/test-native-units.mjs'], { stdio: 'inherit' });
  if (u.status !== 0) {
    console.error('native unit tests failed');
    process.exit(u.status ?? 1);
  }
}
// One file at a time: guest and device tests share loop devices, QEMU and CPU. A hang fails and is
// named instead of stalling CI, at three levels: every wait inside a test has a deadline
// (tests/lib/wait.ts); every test and hook has one of its own, 10 minutes unless it sets another
// (tests/lib/test.ts, SPINDLE_PER_TEST_TIMEOUT_MS); and every file has this one, because Node 20
// applies --test-timeout to an isolated file as a whole. 15 minutes is about 4x the longest file on
// a loaded 2-core machine; SPINDLE_TEST_TIMEOUT_MS overrides it.
const timeoutMs = Number(process.env.SPINDLE_TEST_TIMEOUT_MS) || 900_000;
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', `--test-timeout=${timeoutMs}`, '--test-reporter=spec', ...list], {
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
