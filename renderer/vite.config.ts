// Builds the renderer into renderer/dist: relative asset paths so the same build loads from
// `spindle serve` (http://127.0.0.1) and from Electron's app:// protocol.
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { fileURLToPath } from 'node:url';
import { realpathSync } from 'node:fs';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = fileURLToPath(new URL('..', import.meta.url));

export default defineConfig({
  root: here,
  base: './',
  plugins: [svelte()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // noVNC uses top-level await.
    target: 'es2022',
    // One file per chunk keeps the CSP simple: no inline scripts, no eval (modulepreload polyfill off).
    modulePreload: { polyfill: false },
    sourcemap: true,
    chunkSizeWarningLimit: 1500,
  },
  // The renderer imports the pure parts of electron/ (modes.ts, the api.ts and model.ts types).
  // node_modules may be a symlink to a shared install: allow its real location too.
  server: { fs: { allow: [repo, realpathSync(repo + 'node_modules')] } },
});
