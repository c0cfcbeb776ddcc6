// Builds the renderer with Vite when it exists (renderer/vite.config.ts).
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
if (!existsSync('renderer/vite.config.ts')) process.exit(0);
execFileSync(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '--config', 'renderer/vite.config.ts', '--logLevel', 'warn'], {
  stdio: 'inherit',
});
