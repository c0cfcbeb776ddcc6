// `npm run bench`: every benchmark in one run, each against its peer measured in the same run
// (engines vs fio; Spindle's vhost-user export vs qemu-storage-daemon; the nowait matrix).
// Results (JSON + markdown) land in bench/results/. Benchmarks report; they never assert timings.
// `table` is the README's table (Spindle vs qemu-storage-daemon vs fio per target and mode).
// `qcow2` is Spindle's qcow2 driver against qemu-storage-daemon's and against raw (the qcow2 issue, section 4).
// usage: npm run bench [-- --quick] [-- --only table|alloc-chunk|alloc-throttled|engines|vhost|nowait|compare|qcow2] [-- --baseline DIR]
//   --baseline DIR: the table also runs DIR/bin/spindle.js (another built checkout), alternating.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const onlyAt = args.indexOf('--only');
const only = onlyAt >= 0 ? args[onlyAt + 1] : null;
const baselineAt = args.indexOf('--baseline');
const baseline = baselineAt >= 0 ? args[baselineAt + 1] : null;
const benches = ['table', 'alloc-chunk', 'alloc-throttled', 'engines', 'vhost', 'nowait', 'compare', 'qcow2'].filter(
  (b) => !only || b === only,
);

const build = spawnSync('npm', ['run', '--silent', 'build:ts'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

let failed = 0;
for (const name of benches) {
  const script = `dist/tests/bench/${name}.js`;
  if (!existsSync(script)) {
    console.error(`bench: ${name}: ${script} not found`);
    failed++;
    continue;
  }
  console.log(`\n=== bench: ${name}${quick ? ' (quick)' : ''} ===`);
  const extra = [...(quick ? ['--quick'] : []), ...(name === 'table' && baseline ? ['--baseline', baseline] : [])];
  const r = spawnSync(process.execPath, [script, ...extra], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`bench: ${name} exited with ${r.status ?? r.signal}`);
    failed++;
  }
}
console.log(`\nresults: bench/results/`);
process.exit(failed ? 1 : 0);
