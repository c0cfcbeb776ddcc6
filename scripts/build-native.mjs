// Builds native/ into build/Release/spindle.node with node-gyp.
// Never `node-gyp rebuild`: its clean step deletes build/, which also holds electron-builder's resources.
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';

const need = [
  ['/usr/include/libaio.h', 'libaio-dev'],
  ['/usr/include/liburing.h', 'liburing-dev'],
];
const missing = need.filter(([h]) => !existsSync(h)).map(([, pkg]) => pkg);
if (missing.length) {
  console.error(
    `spindle: cannot build the native addon: missing headers; run: sudo apt-get install -y build-essential ${missing.join(' ')}`,
  );
  process.exit(1);
}
const require = createRequire(import.meta.url);
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
// Debian's nodejs ships headers in /usr/include/node; use them instead of downloading.
const nodedir = process.env.npm_config_nodedir || (existsSync('/usr/include/node/node_api.h') ? '/usr' : undefined);
const args = nodedir ? [`--nodedir=${nodedir}`] : [];
const run = (verb) => execFileSync(process.execPath, [gyp, verb, ...args, '--loglevel=warn'], { stdio: 'inherit' });
try {
  run('configure');
  run('build');
} catch {
  console.error('spindle: native addon build failed (see the compiler output above)');
  process.exit(1);
}
