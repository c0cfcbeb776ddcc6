// `spindle vm`: the per-disk full-filesystem policy (enospc) through create/set-disk/show, its bad
// values refused, and `vm stats` lines with and without the nowait and submit-stall figures.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, truncateSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmInfo, type DiskSample } from '../../electron/shared/api.js';
import { formatDiskSample } from '../../electron/cli/vm.js';
import { isolatedEnv, runVmCli } from '../lib/api.js';

let dir: string;
let env: NodeJS.ProcessEnv;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'spindle-cli-enospc-'));
  env = isolatedEnv(dir);
  writeFileSync(join(dir, 'a.img'), '');
  truncateSync(join(dir, 'a.img'), 16 << 20);
});
after(() => rmSync(dir, { recursive: true, force: true }));

const spindle = (...args: string[]) => runVmCli(dir, env, args);

test('enospc: defaults to stop, set-disk switches it to report and back, a bad value is refused and changes nothing', () => {
  const created = spindle('create', 'full', '--disk', 'a.img', '--no-display', '--json');
  assert.equal(created.code, 0, created.stderr);
  assert.equal(VmInfo.parse(JSON.parse(created.stdout)).config.disks[0]!.enospc, 'stop');

  const set = spindle('set-disk', 'full', 'd0', '--enospc', 'report', '--json');
  assert.equal(set.code, 0, set.stderr);
  assert.equal(VmInfo.parse(JSON.parse(set.stdout)).config.disks[0]!.enospc, 'report');
  const stored = JSON.parse(readFileSync(join(dir, 'cfg', 'spindle', 'vms', 'full.json'), 'utf8'));
  assert.equal(stored.disks[0].enospc, 'report');
  assert.match(spindle('show', 'full').stdout, /d0: .* enospc=report/);

  const bad = spindle('set-disk', 'full', 'd0', '--enospc', 'ignore');
  assert.equal(bad.code, 2, bad.stderr);
  assert.equal(bad.stdout, '');
  assert.match(bad.stderr, /enospc/);
  assert.equal(VmInfo.parse(JSON.parse(spindle('show', 'full', '--json').stdout)).config.disks[0]!.enospc, 'report');
});

test('a VM file written before enospc existed still loads (the policy reads as stop)', () => {
  const file = join(dir, 'cfg', 'spindle', 'vms', 'full.json');
  const cfg = JSON.parse(readFileSync(file, 'utf8'));
  delete cfg.disks[0].enospc;
  writeFileSync(file, JSON.stringify(cfg));
  const show = spindle('show', 'full');
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /d0: .* enospc=stop/);
});

const sample: DiskSample = {
  vmId: 'demo',
  diskId: 'd0',
  t: 1,
  readIops: 10,
  writeIops: 20,
  readMBps: 1,
  writeMBps: 2,
  latencyP50Us: 50,
  latencyP99Us: 900,
  queueDepth: 3,
  backendCpuPct: 4.25,
  backendCpuSec: 1,
} as DiskSample;

test('vm stats: nowait fallbacks and the longest submit are printed when the sampler reports them, and only then', () => {
  const plain = formatDiskSample(sample);
  assert.match(plain, /^demo\/d0: read 1\.0 MB\/s 10 IOPS, write 2\.0 MB\/s 20 IOPS, p50 50 µs p99 900 µs, QD 3, backend CPU 4\.3%$/);
  assert.doesNotMatch(plain, /nowait|submit/);
  const full = formatDiskSample({ ...sample, nowaitFallbacksPerSec: 12.5, submitStallMaxUs: 1834.4 });
  assert.match(full, /, nowait fallbacks 12\.5\/s, longest submit 1834 µs$/);
  assert.match(formatDiskSample({ ...sample, nowaitFallbacksPerSec: 0 }), /nowait fallbacks 0\.0\/s$/);
});
