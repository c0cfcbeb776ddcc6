// `npm run soak`: 8 disks across 4 synthetic guests at full load (default 10 minutes; not in CI).
// Samples RSS, open fds, errors and API latency throughout; writes bench/results/soak-*.json.
// usage: npm run soak [-- --duration 600] [-- --disks 8] [-- --guests 4] [-- --sample 5] [-- --disk-mib 64]
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

if (!existsSync('build/Release/spindle.node')) {
  const nat = spawnSync('npm', ['run', '--silent', 'build:native'], { stdio: 'inherit' });
  if (nat.status !== 0) process.exit(nat.status ?? 1);
}
const ts = spawnSync('npm', ['run', '--silent', 'build:ts'], { stdio: 'inherit' });
if (ts.status !== 0) process.exit(ts.status ?? 1);
const r = spawnSync(process.execPath, ['dist/tests/soak/soak.js', ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
