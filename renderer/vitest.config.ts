// Component tests: `npx vitest run --config renderer/vitest.config.ts` (jsdom, Svelte in browser mode).
import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { svelteTesting } from '@testing-library/svelte/vite';
import { fileURLToPath } from 'node:url';
import { realpathSync } from 'node:fs';

const repo = fileURLToPath(new URL('..', import.meta.url));

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  plugins: [svelte(), svelteTesting()],
  // node_modules may be a symlink to a shared install: allow its real location too.
  server: { fs: { allow: [repo, realpathSync(repo + 'node_modules')] } },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.ts'],
  },
});
