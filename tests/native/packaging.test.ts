// What can be checked of `npm run dist` without Electron's download: after a build (npm test
// builds the TypeScript, the renderer and the addon first), every path build/electron-builder.yml
// packs exists, and the addon needs no system library beyond the C/C++ runtime (README,
// "Packaging": libaio through its syscalls, liburing linked statically).
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { projectRoot } from '../../electron/dataplane/native/addon.js';

const CONFIG = join(projectRoot, 'build/electron-builder.yml');

/** The items of a top-level list (`key:` followed by `  - item` lines) in the YAML file. */
function listOf(yaml: string, key: string): string[] {
  const lines = yaml.split('\n');
  const start = lines.findIndex((l) => l === `${key}:`);
  assert.ok(start >= 0, `${key}: in ${CONFIG}`);
  const items: string[] = [];
  for (const l of lines.slice(start + 1)) {
    const m = /^\s+-\s+"?([^"#]+?)"?\s*$/.exec(l);
    if (m) items.push(m[1]!);
    else if (!/^\s*(#.*)?$/.test(l)) break;
  }
  return items;
}

/** The files under the project that a glob (`**`, `*`) matches. */
function matches(glob: string): string[] {
  const fixed = glob.split('/').findIndex((p) => p.includes('*'));
  const root = join(projectRoot, ...glob.split('/').slice(0, fixed < 0 ? undefined : fixed));
  if (fixed < 0) return existsSync(root) ? [glob] : [];
  const re = new RegExp(
    `^${glob
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*\*\//g, '@DIRS@')
      .replace(/\*\*/g, '.*')
      .replace(/\*/g, '[^/]*')
      .replace(/@DIRS@/g, '(?:.*/)?')}$`,
  );
  const walk = (dir: string): string[] =>
    !existsSync(dir)
      ? []
      : readdirSync(dir).flatMap((n) => {
          const p = join(dir, n);
          return statSync(p).isDirectory() ? walk(p) : [relative(projectRoot, p)];
        });
  return walk(root).filter((f) => re.test(f));
}

test('every path electron-builder.yml packs exists after a build, the entry points among them', () => {
  const yaml = readFileSync(CONFIG, 'utf8');
  const files = listOf(yaml, 'files');
  assert.ok(files.length >= 5, `files: ${files}`);
  for (const pattern of [...files.filter((f) => !f.startsWith('!')), ...listOf(yaml, 'asarUnpack')])
    assert.ok(matches(pattern).length > 0, `${pattern} (in ${CONFIG}) matches nothing: run npm run build`);
  // The app's entry points are built and packed.
  const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { main: string; bin: Record<string, string> };
  const packed = (f: string): boolean => files.some((p) => !p.startsWith('!') && matches(p).includes(f));
  for (const f of [pkg.main, 'dist/electron/preload.cjs', 'renderer/dist/index.html', ...Object.values(pkg.bin)]) {
    assert.ok(existsSync(join(projectRoot, f)), `${f} was not built`);
    assert.ok(packed(f), `${f} is not in electron-builder.yml's files`);
  }
  // Resources named outside `files`: the icon folder and the build resources directory.
  const icon = /^\s+icon:\s+(\S+)\s*$/m.exec(yaml)?.[1];
  assert.ok(icon && readdirSync(join(projectRoot, icon)).includes('512x512.png'), `linux.icon: ${icon}`);
  const buildResources = /^\s+buildResources:\s+(\S+)\s*$/m.exec(yaml)?.[1];
  assert.ok(buildResources && statSync(join(projectRoot, buildResources)).isDirectory(), `directories.buildResources: ${buildResources}`);
});

test('the addon links no libaio or liburing: liburing is inside it, libaio is reached by syscalls', () => {
  const addon = join(projectRoot, 'build/Release/spindle.node');
  const ldd = execFileSync('ldd', [addon], { encoding: 'utf8' });
  assert.ok(/libc\.so/.test(ldd), `ldd read the addon:\n${ldd}`);
  assert.doesNotMatch(ldd, /libaio|liburing/, `the addon needs a system library the AppImage does not carry:\n${ldd}`);
  assert.doesNotMatch(ldd, /not found/, ldd);
  // Statically linked: liburing's functions are defined in the addon itself.
  const defined = execFileSync('nm', ['--defined-only', addon], { encoding: 'utf8' });
  assert.match(defined, / T io_uring_queue_init\b/, 'liburing is linked into the addon');
});
