import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, readdirSync, mkdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { VmStore, slugify, parseVmFile } from '../../electron/host/vm/store.js';
import { VM_CONFIG_VERSION, type VmConfig } from '../../electron/shared/model.js';
import { SpindleError } from '../../electron/shared/errors.js';

const cfg = (id: string, name = id): VmConfig => ({
  version: VM_CONFIG_VERSION,
  id,
  name,
  cpus: 1,
  memoryMiB: 256,
  firmware: 'bios',
  boot: { kind: 'disk' },
  disks: [],
  network: { user: true },
  display: 'none',
  createdAt: '2026-01-01T00:00:00.000Z',
});

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-store-'));
  try {
    fn(join(dir, 'vms'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('create, load, update and delete round-trip; no temp files left; files are 0600', () =>
  withDir((dir) => {
    const store = new VmStore(dir);
    store.create(cfg('alpha', 'Alpha VM'));
    assert.deepEqual(store.loadAll(), { vms: [cfg('alpha', 'Alpha VM')], problems: [] });
    store.update({ ...cfg('alpha', 'Alpha VM'), cpus: 4 });
    assert.equal(store.loadAll().vms[0]!.cpus, 4);
    assert.deepEqual(readdirSync(dir), ['alpha.json']);
    assert.equal(statSync(join(dir, 'alpha.json')).mode & 0o777, 0o600);
    store.delete('alpha');
    assert.deepEqual(store.loadAll(), { vms: [], problems: [] });
  }));

test('create never overwrites an existing file (CONFLICT)', () =>
  withDir((dir) => {
    const store = new VmStore(dir);
    store.create(cfg('a'));
    assert.throws(
      () => store.create(cfg('a', 'other')),
      (e: SpindleError) => e.code === 'CONFLICT',
    );
    assert.equal(store.loadAll().vms[0]!.name, 'a');
  }));

test('corrupt JSON, schema violations, unknown versions and id mismatches are reported and left untouched', () =>
  withDir((dir) => {
    const store = new VmStore(dir);
    store.create(cfg('good'));
    const bad: Record<string, string> = {
      'broken.json': '{"version": 1, "id": "broken", ',
      'newer.json': JSON.stringify({ ...cfg('newer'), version: 2 }),
      'noversion.json': JSON.stringify({ id: 'noversion' }),
      'wrongcpu.json': JSON.stringify({ ...cfg('wrongcpu'), cpus: 0 }),
      'mismatch.json': JSON.stringify(cfg('other')),
      'array.json': '[]',
    };
    for (const [n, text] of Object.entries(bad)) writeFileSync(join(dir, n), text);
    const { vms, problems } = store.loadAll();
    assert.deepEqual(
      vms.map((v) => v.id),
      ['good'],
    );
    const reasons = Object.fromEntries(problems.map((p) => [p.file.split('/').pop(), p.reason]));
    assert.deepEqual(Object.keys(reasons).sort(), Object.keys(bad).sort());
    assert.match(reasons['broken.json']!, /not valid JSON/);
    assert.match(reasons['newer.json']!, /version 2.*reads version 1/);
    assert.match(reasons['wrongcpu.json']!, /cpus/);
    assert.match(reasons['mismatch.json']!, /does not match its file name/);
    for (const p of problems) assert.match(p.reason, /left untouched/);
    for (const [n, text] of Object.entries(bad)) assert.equal(readFileSync(join(dir, n), 'utf8'), text);
    // Updating over a corrupt file is refused, and the file survives byte for byte.
    assert.throws(
      () => store.update(cfg('broken')),
      (e: SpindleError) => e.code === 'CONFIG_CORRUPT',
    );
    assert.equal(readFileSync(join(dir, 'broken.json'), 'utf8'), bad['broken.json']);
    // A new VM never takes the id of a corrupt file.
    assert.equal(store.newId('Broken'), 'broken-2');
  }));

test('slugify makes safe, bounded file names from any text', () => {
  assert.equal(slugify('My VM'), 'my-vm');
  assert.equal(slugify('../../etc/passwd'), 'etc-passwd');
  assert.equal(slugify('Ünïcodé Dèsktop'), 'unicode-desktop');
  assert.equal(slugify('   '), 'vm');
  assert.equal(slugify('日本語'), 'vm');
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (s) => {
      const id = slugify(s);
      return /^[a-z0-9][a-z0-9-]*$/.test(id) && id.length <= 32 && !id.endsWith('-');
    }),
    { numRuns: 2000 },
  );
});

test('newId resolves collisions and stays within the id length', () =>
  withDir((dir) => {
    const store = new VmStore(dir);
    mkdirSync(dir, { recursive: true });
    const long = 'x'.repeat(50);
    const a = store.newId(long);
    store.create(cfg(a));
    const b = store.newId(long);
    assert.notEqual(a, b);
    assert.ok(b.length <= 32 && b.endsWith('-2'));
    store.create(cfg(b));
    assert.ok(store.newId(long).endsWith('-3'));
  }));

test('ids that could escape the directory are refused', () =>
  withDir((dir) => {
    const store = new VmStore(dir);
    assert.throws(
      () => store.delete('../x'),
      (e: SpindleError) => e.code === 'INVALID_ARGUMENT',
    );
    assert.throws(() => store.create({ ...cfg('a'), id: '../../evil' }));
  }));

test('parseVmFile never throws on arbitrary text', () => {
  fc.assert(
    fc.property(fc.string(), (s) => {
      const r = parseVmFile('/x.json', s);
      return r.ok === false || typeof r.config.id === 'string';
    }),
    { numRuns: 1000 },
  );
  fc.assert(
    fc.property(fc.jsonValue(), (v) => parseVmFile('/x.json', JSON.stringify(v)).ok === false),
    { numRuns: 500 },
  );
});
