#!/usr/bin/env node
// The C++ half of `npm run format` (rewrites native/ in place) and, with --check, of `npm run lint`
// (fails unless every file under native/ is as clang-format writes it; style in .clang-format).
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const check = process.argv.includes('--check');
const sources = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : /\.(cc|h)$/.test(e.name) ? [join(dir, e.name)] : [],
  );

const files = sources('native');
try {
  execFileSync('clang-format', [...(check ? ['--dry-run', '--Werror'] : ['-i']), ...files], { stdio: 'inherit' });
} catch (err) {
  console.error(
    err.code === 'ENOENT'
      ? 'clang-format is not installed (scripts/setup.sh installs it).'
      : 'native/ is not clang-formatted: run `npm run format`.',
  );
  process.exit(1);
}
if (check) console.log(`clang-format: all ${files.length} files under native/ are formatted.`);
