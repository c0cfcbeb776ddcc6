// `inspect --probe` on loop-mounted ext4 and xfs: PATH's data untouched, temp file gone (also after
// SIGINT mid-probe), fields present and sane.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from '../../electron/host/advisor/advisor.js';
import type { FilesystemProbe } from '../../electron/host/advisor/probe.js';
import { makeFile, mountFs } from '../lib/loop.js';

const MiB = 1 << 20;
const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const probeFiles = (dir: string) => readdirSync(dir).filter((n) => n.startsWith('.spindle-probe-'));

for (const [fsType, sizeMiB] of [['ext4', 96], ['xfs', 300]] as const) {
  test(`probe on ${fsType}: measures, never touches PATH, removes its temporary file`, async () => {
    const fs = mountFs(fsType, sizeMiB);
    try {
      const path = makeFile(join(fs.mountpoint, 'user.img'), 4 * MiB, { written: true });
      const before = sha(path);
      const i = await inspect(path, { probe: true });
      assert.equal(sha(path), before, 'PATH data changed');
      assert.deepEqual(probeFiles(fs.mountpoint), []);
      assert.equal(i.filesystem, fsType);
      const p = i.probe as FilesystemProbe;
      assert.ok(p && 'verdict' in p, JSON.stringify(i.probe));
      assert.equal(p.directory, fs.mountpoint);
      assert.equal(p.nowaitSupported, true);
      for (const k of ['sparse', 'fallocated', 'written'] as const) {
        const r = p.regions[k]!;
        assert.ok(r, k);
        for (const rate of [r.nowaitWrites, r.nowaitReads]) {
          assert.equal(rate.requests, p.requestsPerPhase);
          assert.equal(rate.honoured + rate.bounced + rate.unsupported + rate.errors, rate.requests);
          assert.equal(rate.errors, 0);
        }
        assert.ok(p.submitSwitchesPerIo[k]! >= 0);
        assert.equal(p.nowaitWrites[k], r.nowaitWrites.honouredRatio);
      }
      // Writes into holes need block allocation, which nowait must refuse on both filesystems.
      assert.ok(p.nowaitWrites.sparse! < 0.5, `sparse nowait writes honoured ${p.nowaitWrites.sparse}`);
      assert.equal(p.nowaitReads.written, 1);
      assert.equal(p.target.holeBytes, 0);
      assert.equal(p.target.unwrittenBytes, 0);
      assert.equal(i.recommended.nowait, p.verdict.nowait);
      assert.equal(i.recommended.aio, 'threads');
      assert.ok(i.reasons.includes(p.verdict.summary));
      assert.match(p.verdict.summary, new RegExp(`^${fsType}: `));
      console.log(`${fsType}: ${p.verdict.summary} writes ${JSON.stringify(p.nowaitWrites)} reads ${JSON.stringify(p.nowaitReads)} switches ${JSON.stringify(p.submitSwitchesPerIo)}`);
    } finally {
      fs.cleanup();
    }
  });
}

test('probe interrupted by SIGINT removes its temporary file and leaves PATH intact', async () => {
  const fs = mountFs('ext4', 96);
  try {
    const path = makeFile(join(fs.mountpoint, 'user.img'), 4 * MiB, { written: true });
    const before = sha(path);
    // SPINDLE_PROBE_HOLD_MS holds the probe after it created its file, so the signal lands mid-probe.
    const child = spawn(process.execPath, ['bin/spindle.js', 'inspect', '--probe', '--json', path], {
      env: { ...process.env, SPINDLE_PROBE_HOLD_MS: '20000' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    let seen = false;
    for (let t = 0; t < 200 && !seen; t++) {
      seen = probeFiles(fs.mountpoint).length === 1;
      if (!seen) await sleep(50);
    }
    assert.ok(seen, 'the probe never created its temporary file');
    child.kill('SIGINT');
    const { code, signal } = await exited;
    assert.equal(signal, 'SIGINT', `exit code ${code}`);
    assert.deepEqual(probeFiles(fs.mountpoint), []);
    assert.equal(sha(path), before);
  } finally {
    fs.cleanup();
  }
});

test('probe on a block device is skipped with a reason', async () => {
  const fs = mountFs('ext4', 16);
  try {
    const i = await inspect(fs.device.device, { probe: true });
    assert.ok(i.probe && 'skipped' in i.probe && /block device/.test(i.probe.skipped));
    assert.equal(i.recommended.nowait, false);
  } finally {
    fs.cleanup();
  }
});
