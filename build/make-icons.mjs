// Renders build/icons/spindle.svg to the PNG sizes a Linux desktop and electron-builder want
// (build/icons/NxN.png), with Debian's Chromium. Run once after changing the SVG:
//   node build/make-icons.mjs
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const dir = fileURLToPath(new URL('./icons/', import.meta.url));
const svg = readFileSync(join(dir, 'spindle.svg'), 'utf8');
const profile = mkdtempSync(join(tmpdir(), 'spindle-icons-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await ctx.newPage();
  for (const size of [16, 24, 32, 48, 64, 128, 256, 512]) {
    await page.setViewportSize({ width: size, height: size });
    await page.setContent(`<html><body style="margin:0;background:transparent">${svg.replace('<svg ', `<svg width="${size}" height="${size}" `)}</body></html>`);
    await page.screenshot({ path: join(dir, `${size}x${size}.png`), omitBackground: true, clip: { x: 0, y: 0, width: size, height: size } });
  }
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
