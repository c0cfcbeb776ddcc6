// Every test has a deadline of its own (tests/lib/test.ts): a test that hangs fails under its own
// name and the tests after it still run; a test's own timeout is kept.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : n.endsWith('.ts') ? [p] : [];
  });
}

test('no test file imports node:test directly: every test goes through the wrapper with a deadline', () => {
  const all = sources(resolve('tests'));
  const direct = all.filter((f) => !f.endsWith(join('lib', 'test.ts')) && /from\s*['"]node:test['"]/.test(readFileSync(f, 'utf8')));
  assert.deepEqual(direct, []);
  assert.ok(all.filter((f) => f.endsWith('.test.ts')).length > 100, 'the test files were found');
});

test('a hanging test fails by its own deadline, names itself, and the next test still runs', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-timeouts-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const wrapper = pathToFileURL(resolve('dist/tests/lib/test.js')).href;
  const fixture = join(dir, 'fixture.test.mjs');
  writeFileSync(
    fixture,
    `import { test, describe, it, before } from ${JSON.stringify(wrapper)};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
test('hangs forever', () => sleep(4000));
test('runs after the hang', () => {});
test('keeps its own longer timeout', { timeout: 10000 }, () => sleep(1000));
describe('a suite', () => {
  before(() => {});
  it('hangs in a suite', () => sleep(4000));
  it('passes in a suite', () => {});
});
`,
  );
  const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', fixture], {
    // Without NODE_TEST_CONTEXT: the child is a test run of its own, not a file of this one.
    env: { ...process.env, NODE_TEST_CONTEXT: undefined, SPINDLE_PER_TEST_TIMEOUT_MS: '400' },
    encoding: 'utf8',
    timeout: 120_000,
  });
  const out = r.stdout + r.stderr;
  assert.notEqual(r.status, 0, out);
  assert.match(out, /✖ hangs forever[^\n]*\n\s*'test timed out after 400ms'/, out);
  assert.match(out, /✔ runs after the hang/, out);
  assert.match(out, /✔ keeps its own longer timeout/, out);
  assert.match(out, /✖ hangs in a suite[^\n]*\n\s*'test timed out after 400ms'/, out);
  assert.match(out, /✔ passes in a suite/, out);
  assert.match(out, /ℹ pass 3/, out);
});
