// `npm run fuzz`: long runs of the same fast-check properties the test suites run bounded
// (tests/fuzz/targets/*: virtio rings, vhost-user reader/codec, a live vhost-user server, QMP
// framing, the API router). Each target gets a share of the time budget and a fresh seed; a
// failure prints fast-check's report (seed + path reproduce it) and the run exits 1.
// usage: npm run fuzz [-- --time 600] [-- --runs 1000000] [-- --only virtio,api] [-- --seed N]
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values: v } = parseArgs({
  options: {
    time: { type: 'string', default: '600' },
    runs: { type: 'string', default: '10000000' },
    only: { type: 'string' },
    seed: { type: 'string' },
    'no-build': { type: 'boolean', default: false },
  },
});
const timeSec = Number(v.time);
const maxRuns = Number(v.runs);
if (!(timeSec > 0) || !(maxRuns > 0)) {
  console.error('fuzz: --time (seconds) and --runs (cases per target) must be positive numbers.');
  process.exit(2);
}

if (!v['no-build']) {
  if (!existsSync('build/Release/spindle.node')) {
    const nat = spawnSync('npm', ['run', '--silent', 'build:native'], { stdio: 'inherit' });
    if (nat.status !== 0) process.exit(nat.status ?? 1);
  }
  const ts = spawnSync('npm', ['run', '--silent', 'build:ts'], { stdio: 'inherit' });
  if (ts.status !== 0) process.exit(ts.status ?? 1);
}

const { targets } = await import('../dist/tests/fuzz/targets/index.js');
const { runTarget } = await import('../dist/tests/fuzz/target.js');
const filters = v.only
  ? v.only
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
  : [];
const chosen = targets.filter((t) => !filters.length || filters.some((f) => t.name.includes(f)));
if (!chosen.length) {
  console.error(`fuzz: no target matches ${v.only}; targets: ${targets.map((t) => t.name).join(', ')}`);
  process.exit(2);
}

const share = (timeSec * 1000) / chosen.length;
console.log(`fuzz: ${chosen.length} targets, ${Math.round(share / 1000)} s each (at most ${maxRuns} cases each)`);
const reports = [];
let failed = 0;
for (const t of chosen) {
  // Fresh seeds (the suite's fixed seeds would replay the cases it already ran).
  const seed = v.seed !== undefined ? Number(v.seed) : (Math.random() * 0x7fffffff) | 0;
  try {
    const r = await runTarget(t, { numRuns: maxRuns, timeLimitMs: share, seed });
    reports.push({ ...r, ok: true });
    console.log(
      `  ${t.name.padEnd(30)} ${String(r.runs).padStart(9)} cases  ${(r.ms / 1000).toFixed(1).padStart(6)} s  seed ${r.seed}  ${Object.keys(r.stats).length ? JSON.stringify(r.stats) : ''}`,
    );
  } catch (err) {
    failed++;
    reports.push({ name: t.name, ok: false, error: String(err?.message ?? err) });
    console.log(`  ${t.name.padEnd(30)} FAILED\n${err?.message ?? err}`);
  }
}
const total = reports.reduce((n, r) => n + (r.runs ?? 0), 0);
console.log(`fuzz: ${total} cases in total, ${failed ? `${failed} target(s) FAILED` : 'no failure'}`);
mkdirSync('bench/results', { recursive: true });
const out = `bench/results/fuzz-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(out, JSON.stringify({ at: new Date().toISOString(), timeSec, maxRuns, total, targets: reports }, null, 2) + '\n');
console.log(`fuzz: report written to ${out}`);
process.exit(failed ? 1 : 0);
