// The dependency rule of docs/ARCHITECTURE.md, read from the source's own imports:
// shared ← dataplane ← host ← api ← cli/main, tools use only dataplane and shared; no folder of
// electron/ imports another that imports it back; the IOThread's closure stays in the data plane.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve('electron');
const IMPORT =
  /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*(['"])([^'"]+)\1|import\s*\(\s*(['"])([^'"]+)\3\s*\)|new URL\(\s*(['"])(\.[^'"]+)\5\s*,\s*import\.meta\.url/g;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : /\.c?ts$/.test(n) && !n.endsWith('.d.ts') ? [p] : [];
  });
}

/** Relative imports of a file, resolved to source files; bare specifiers as themselves. */
function importsOf(file: string): { local: string[]; bare: string[] } {
  const text = readFileSync(file, 'utf8');
  const local: string[] = [];
  const bare: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[2] ?? m[4] ?? m[6]!;
    if (!spec.startsWith('.')) {
      bare.push(spec);
      continue;
    }
    const target = resolve(dirname(file), spec).replace(/\.c?js$/, (e) => (e === '.cjs' ? '.cts' : '.ts'));
    if (existsSync(target)) local.push(target);
  }
  return { local, bare };
}

/** The layer of a file: electron/<layer>/..., or 'main' for the Electron shell at the root. */
const layerOf = (file: string) => {
  const parts = relative(ROOT, file).split('/');
  return parts.length === 1 ? 'main' : parts[0]!;
};
/** The folder of a file below its layer (electron/host/vm/x.ts -> host/vm). */
const folderOf = (file: string) => relative(ROOT, dirname(file)) || '.';

const ALLOWED: Record<string, string[]> = {
  shared: [],
  dataplane: ['shared'],
  tools: ['shared', 'dataplane'],
  host: ['shared', 'dataplane', 'tools'],
  api: ['shared', 'dataplane', 'tools', 'host'],
  cli: ['shared', 'dataplane', 'tools', 'host', 'api'],
  main: ['shared', 'dataplane', 'tools', 'host', 'api', 'cli'],
};

const files = sources(ROOT);
const graph = new Map(files.map((f) => [f, importsOf(f)]));

test('every file of electron/ sits in a known layer', () => {
  const unknown = files.filter((f) => !(layerOf(f) in ALLOWED));
  assert.deepEqual(
    unknown.map((f) => relative(ROOT, f)),
    [],
  );
});

test('imports point one way: shared ← dataplane ← host ← api ← cli/main; tools use only dataplane and shared', () => {
  const wrong: string[] = [];
  for (const [f, { local }] of graph) {
    for (const t of local) {
      const from = layerOf(f);
      const to = layerOf(t);
      if (from !== to && !ALLOWED[from]!.includes(to)) wrong.push(`${relative(ROOT, f)} -> ${relative(ROOT, t)}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('shared/ is pure: no Node or Electron API, so the renderer imports it too', () => {
  const wrong: string[] = [];
  for (const [f, { bare }] of graph) {
    if (layerOf(f) !== 'shared') continue;
    for (const b of bare) if (b.startsWith('node:') || b === 'electron' || b === 'ws') wrong.push(`${relative(ROOT, f)} imports ${b}`);
  }
  assert.deepEqual(wrong, []);
});

test('no folder of electron/ imports another folder that imports it back', () => {
  const edges = new Map<string, Set<string>>();
  for (const [f, { local }] of graph) {
    for (const t of local) {
      const a = folderOf(f);
      const b = folderOf(t);
      if (a === b) continue;
      if (!edges.has(a)) edges.set(a, new Set());
      edges.get(a)!.add(b);
    }
  }
  // Tarjan's strongly connected components: any component of more than one folder is a cycle.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) cycles.push(scc.sort());
    }
  };
  for (const v of edges.keys()) if (!idx.has(v)) visit(v);
  assert.deepEqual(cycles, []);
});

test("the IOThread's import closure holds nothing from host, api, cli or tools", () => {
  const entry = join(ROOT, 'dataplane/iothread/worker.ts');
  const seen = new Set<string>();
  const walk = (f: string) => {
    if (seen.has(f)) return;
    seen.add(f);
    for (const t of graph.get(f)?.local ?? []) walk(t);
  };
  walk(entry);
  assert.ok(seen.size > 10, `the worker's closure was read (${seen.size} files)`);
  const outside = [...seen].filter((f) => !['dataplane', 'shared'].includes(layerOf(f)));
  assert.deepEqual(
    outside.map((f) => relative(ROOT, f)),
    [],
  );
});
