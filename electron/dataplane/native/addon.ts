// Loads build/Release/spindle.node once per thread (the addon is context-aware).
// Each area types its part of the addon in its own module: engine.ts, os.ts, posix.ts.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const require = createRequire(import.meta.url);
// dist/electron/dataplane/native/addon.js -> project root (also inside app.asar, where Electron maps .node files to app.asar.unpacked).
export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const addon: any = require(path.join(projectRoot, 'build/Release/spindle.node'));
