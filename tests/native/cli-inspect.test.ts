// The inspect and create-image commands as a user runs them: output, JSON, exit codes, one-line errors.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../lib/loop.js';

const spindle = (...args: string[]) => spawnSync(process.execPath, ['bin/spindle.js', ...args], { encoding: 'utf8' });

test('create-image then inspect --json', () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'disk.img');
    const made = spindle('create-image', path, '--size', '16M');
    assert.equal(made.status, 0, made.stderr);
    assert.match(made.stdout, /16 MiB raw, sparse/);
    assert.equal(statSync(path).size, 16 << 20);
    const r = spindle('inspect', path, '--json');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    for (const k of ['path', 'kind', 'sizeBytes', 'logicalBlockSize', 'sparse', 'filesystem', 'directIo', 'inUse', 'recommended', 'reasons']) assert.ok(k in j, k);
    assert.equal(j.kind, 'file');
    assert.equal(j.sparse, true);
    assert.deepEqual(Object.keys(j.recommended).sort(), ['aio', 'cache', 'nowait']);
    const pre = spindle('create-image', join(dir.path, 'pre.img'), '--size', '8MiB', '--preallocate', '--json');
    assert.equal(pre.status, 0, pre.stderr);
    assert.equal(JSON.parse(pre.stdout).preallocated, true);
    const human = spindle('inspect', join(dir.path, 'pre.img'));
    assert.equal(human.status, 0);
    assert.match(human.stdout, /safe for native\s+yes/);
  } finally {
    dir.cleanup();
  }
});

test('bad input: one-line error and exit code 2', () => {
  const dir = tempDir();
  try {
    const cases: Array<[string[], RegExp]> = [
      [['inspect'], /Missing PATH/],
      [['inspect', 'a', 'b'], /exactly one PATH/],
      [['inspect', '--bogus', 'x'], /Unknown option '--bogus'/],
      [['create-image'], /Missing PATH/],
      [['create-image', join(dir.path, 'x.img')], /Missing --size/],
      [['create-image', join(dir.path, 'x.img'), '--size', 'ten'], /'ten' is not a size/],
      [['create-image', join(dir.path, 'x.img'), '--size', '10GB'], /ambiguous/],
      [['create-image', join(dir.path, 'x.img'), '--size', '1000'], /not a multiple of 512/],
      [['create-image', join(dir.path, 'x.img'), '--size'], /--size needs a value\. See: spindle create-image --help\./],
    ];
    for (const [args, re] of cases) {
      const r = spindle(...args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: ${r.stderr}`);
    }
    assert.equal(existsSync(join(dir.path, 'x.img')), false);
  } finally {
    dir.cleanup();
  }
});

test('runtime failures: one line, exit code 1', () => {
  const dir = tempDir();
  try {
    for (const [args, re] of [
      [['inspect', join(dir.path, 'missing.img')], /does not exist/],
      [['inspect', dir.path], /is a directory/],
    ] as Array<[string[], RegExp]>) {
      const r = spindle(...args);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
    const path = join(dir.path, 'a.img');
    assert.equal(spindle('create-image', path, '--size', '1M').status, 0);
    const again = spindle('create-image', path, '--size', '1M');
    assert.equal(again.status, 1);
    assert.match(again.stderr, /already exists/);
  } finally {
    dir.cleanup();
  }
});
