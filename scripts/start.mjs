// `npm start`: the Electron app where its binary exists; otherwise one clear line and the same app
// in serve mode, which prints the URL to open.
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);

/** The Electron binary's path, or null when the package or its downloaded binary is missing. */
function electronBinary() {
  try {
    require.resolve('electron');
    const path = require('electron'); // the package's main exports the binary path (throws when the download failed)
    return typeof path === 'string' && existsSync(path) ? path : null;
  } catch {
    return null;
  }
}

const missing = ['dist/electron/cli/main.js', 'renderer/dist/index.html'].filter((f) => !existsSync(`${root}/${f}`));
if (missing.length) {
  console.error(`spindle: not built yet (missing ${missing.join(', ')}); run: npm run build`);
  process.exit(1);
}

const electron = electronBinary();
let child;
if (electron) {
  child = spawn(electron, [root], { stdio: 'inherit' });
} else {
  console.log('Electron is not installed (its binary could not be downloaded); starting serve mode instead');
  child = spawn(process.execPath, [`${root}/bin/spindle.js`, 'serve', ...process.argv.slice(2)], { stdio: 'inherit' });
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
