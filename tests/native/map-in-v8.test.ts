// Electron (V8 memory cage) refuses external ArrayBuffers, so there guest RAM is mapped inside
// V8-owned buffers. Electron cannot be installed here: SPINDLE_MAP_IN_V8=1 forces that same path
// under Node, and the key data-path tests run again in a child process with it set (the child
// and every process it starts - `spindle export`, IOThread workers - map guest memory in V8).
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = (name: string): string => fileURLToPath(new URL(name, import.meta.url));
// NODE_TEST_CONTEXT (set by the runner for this file) would make the nested runner report to us
// instead of printing TAP.
const { NODE_TEST_CONTEXT: _ctx, ...baseEnv } = process.env;
const env = { ...baseEnv, SPINDLE_MAP_IN_V8: '1' };

test('with SPINDLE_MAP_IN_V8=1 mappings really sit inside a V8 buffer and stay zero copy', () => {
  const posixUrl = new URL('../../electron/dataplane/native/posix.js', import.meta.url).href;
  const code = `
    import { posix } from ${JSON.stringify(posixUrl)};
    import { readSync } from 'node:fs';
    const fd = posix.memfdCreate('v8-probe', 1 << 20);
    const v = posix.mapShared(fd, 0, 1 << 20);
    v[12345] = 0x6b;
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, 12345);
    console.log(JSON.stringify({ inV8: posix.mapsInV8(), offset: v.byteOffset, bufferBytes: v.buffer.byteLength, viaFd: b[0] }));
    posix.unmap(v);
  `;
  const run = (e: NodeJS.ProcessEnv) => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { env: e, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { inV8: boolean; offset: number; bufferBytes: number; viaFd: number };
  };
  const inV8 = run(env);
  assert.equal(inV8.inV8, true);
  assert.ok(inV8.bufferBytes >= (1 << 20) + 4096, 'the V8 buffer holds the mapping plus alignment slack');
  assert.equal(inV8.viaFd, 0x6b, 'a write through the view is seen through the fd');
  const plain = run({ ...baseEnv, SPINDLE_MAP_IN_V8: '' });
  assert.deepEqual(plain, { inV8: false, offset: 0, bufferBytes: 1 << 20, viaFd: 0x6b });
});

test('key data-path tests pass with guest memory mapped inside V8 buffers', () => {
  const files = [
    'vhost-user-posix.test.js',      // mapShared round trip, unmap, worker exit
    'vhost-user-server.test.js',     // memory table + inflight area, device sees frontend writes
    'loadgen-device.test.js',        // loadgen --verify through the virtio-blk device
    'export-cli.test.js',            // loadgen --verify against `spindle export` (a child process)
    'iothread-disk-server.test.js',  // a disk served from its own IOThread
  ].map(here);
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=tap', ...files], {
    env, encoding: 'utf8', maxBuffer: 64 << 20,
  });
  const summary = (k: string) => Number(new RegExp(`^# ${k} (\\d+)$`, 'm').exec(r.stdout)?.[1] ?? NaN);
  const failed = r.stdout.split('\n').filter((l) => /^\s*not ok/.test(l));
  assert.deepEqual(failed, [], `${r.stdout.slice(-4000)}\n${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(summary('pass') >= 10, `expected the data-path tests to run: ${r.stdout.slice(-2000)}`);
  assert.equal(summary('fail'), 0);
  assert.equal(summary('skipped'), 0);
});
