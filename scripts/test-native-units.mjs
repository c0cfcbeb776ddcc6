// Builds and runs the engine's C++ unit tests (native/engine/test: range locks, FUA barrier,
// batch decoding, counters), which need neither Node nor the kernel: one compiler call, one
// binary in a temporary directory, removed afterwards. usage: node scripts/test-native-units.mjs
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const testDir = 'native/engine/test';
// The tests and the engine sources they exercise (only pure ones: no Node-API, no syscalls).
const sources = [
  ...readdirSync(testDir)
    .filter((f) => f.endsWith('.cc'))
    .sort()
    .map((f) => join(testDir, f)),
  'native/engine/range_locks.cc',
  'native/engine/batch.cc',
];
const dir = mkdtempSync(join(tmpdir(), 'spindle-native-units-'));
const exe = join(dir, 'native-units');
const cxx = process.env.CXX || 'c++';
try {
  const build = spawnSync(cxx, ['-std=c++20', '-O1', '-Wall', '-Wextra', '-Werror', '-Inative', '-o', exe, ...sources], {
    stdio: 'inherit',
  });
  if (build.error || build.status !== 0) {
    console.error(`native units: ${cxx} failed to build ${testDir}${build.error ? `: ${build.error.message}` : ''}`);
    process.exit(1);
  }
  // A hang in a C++ unit test (a lock that never releases) fails the run instead of stalling it.
  const run = spawnSync(exe, [], { stdio: 'inherit', timeout: 300_000, killSignal: 'SIGKILL' });
  if (run.signal) console.error(`native units: killed by ${run.signal} (timeout 300 s or a crash)`);
  process.exit(run.status ?? 1);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
