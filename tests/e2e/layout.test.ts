// The layout check: at 1024, 1280, 1440 and 1920 px, in light and dark, no page,
// dialog or panel is wider than it shows, and every primary button is reachable without a
// sideways scroll. A real `spindle serve`, Debian's Chromium, real image files and a real loop
// device. Screenshots: tests/artifacts/layout-<view>-<w>x<h>-<theme>.png.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { startApp, apiCall as callApi, type App } from './lib/serve.js';
import { click, check, fill, checkLayouts, reachable } from './lib/ui.js';
import { tempDir, makeFile, attachLoop, type LoopDevice } from '../lib/loop.js';

let app: App;
let page: Page;
let pageErrors: string[];
let tmp: ReturnType<typeof tempDir>;
let loop: LoopDevice;
let sparseFile: string;
let vmId: string;

before(async () => {
  tmp = tempDir('spindle-e2e-layout-');
  loop = attachLoop(makeFile(join(tmp.path, 'loop-backing.img'), 32 << 20, { written: true }));
  sparseFile = makeFile(join(tmp.path, 'a-rather-long-file-name-for-a-disk-image-of-the-layout-test.img'), 256 << 20);
  app = await startApp({ width: 1280, height: 800 }, 'light');
  ({ page, errors: pageErrors } = app);
});

after(async () => {
  await app?.close();
  loop?.detach();
  tmp?.cleanup();
});

const apiCall = (method: string, params: unknown) => callApi(app.served, method, params);

test('welcome and the New VM dialog', async () => {
  await page.getByRole('heading', { name: 'No virtual machines yet' }).waitFor();
  await checkLayouts(page, 'layout-welcome');
  await click(page.getByRole('navigation').getByRole('button', { name: 'New VM' }));
  const dialog = page.getByRole('dialog', { name: 'New virtual machine' });
  await checkLayouts(page, 'layout-new-vm', { verify: () => reachable(dialog.getByRole('button', { name: 'Create VM' })) });
  await fill(dialog.getByLabel('Name'), 'layout');
  await check(dialog.getByLabel('its first disk'));
  await click(dialog.getByRole('button', { name: 'Create VM' }));
  await page.getByRole('heading', { name: 'layout', exact: true }).waitFor();
  vmId = (await apiCall('vm.list', {})).result.vms[0].config.id;
  const r = await apiCall('disk.attach', { vmId, disk: { path: sparseFile } });
  assert.ok(r.ok, r.error?.message);
  const r2 = await apiCall('disk.attach', { vmId, disk: { path: loop.device } });
  assert.ok(r2.ok, r2.error?.message);
});

test('the VM page: overview, disks, performance, console', async () => {
  await checkLayouts(page, 'layout-overview');
  await click(page.getByRole('tab', { name: 'Disks' }));
  await page.getByTestId('disk-row').nth(1).getByTestId('advisor-badge').waitFor();
  await checkLayouts(page, 'layout-disks');
  await click(page.getByRole('tab', { name: 'Performance' }));
  await checkLayouts(page, 'layout-performance');
  await click(page.getByRole('tab', { name: 'Console' }));
  await checkLayouts(page, 'layout-console');
});

test('Add disk: each source fits, and its primary button is reachable at every width', async () => {
  await click(page.getByRole('tab', { name: 'Disks' }));
  await click(page.getByRole('button', { name: 'Add disk…' }));
  const dialog = page.getByRole('dialog');
  await checkLayouts(page, 'layout-add-disk-new', { verify: () => reachable(dialog.getByRole('button', { name: 'Create and attach' })) });
  await check(dialog.getByLabel('Existing image file'));
  await fill(dialog.getByLabel('Image file', { exact: true }), sparseFile);
  await dialog.getByLabel('Image file', { exact: true }).press('Tab');
  await dialog.getByTestId('advisor-badge').waitFor();
  await checkLayouts(page, 'layout-add-disk-file', { verify: () => reachable(dialog.getByRole('button', { name: 'Attach' })) });
  await check(dialog.getByLabel('Host block device'));
  await dialog.getByTestId('device').first().waitFor();
  await checkLayouts(page, 'layout-add-disk-device', { verify: () => reachable(dialog.getByRole('button', { name: 'Attach' })) });
  // Every control of the dialog is reachable at the narrowest and the widest size.
  for (const width of [1024, 1920]) {
    await page.setViewportSize({ width, height: 800 });
    await check(dialog.getByLabel('New image file'));
    for (const name of ['Read-only']) await reachable(dialog.getByLabel(name));
    await reachable(dialog.getByRole('button', { name: 'Create and attach' }));
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  await click(dialog.getByRole('button', { name: 'Cancel' }));
  await dialog.waitFor({ state: 'detached' });
});

test('the tools: compare and the scratch disk', async () => {
  await click(page.getByRole('button', { name: 'Compare aio modes' }).first());
  await page.getByRole('heading', { name: 'Compare aio modes' }).waitFor();
  await checkLayouts(page, 'layout-compare', { verify: () => reachable(page.getByRole('button', { name: 'Run comparison' })) });
  await click(page.getByRole('button', { name: 'Scratch disk' }));
  await page.getByRole('heading', { name: 'Scratch disk' }).waitFor();
  await checkLayouts(page, 'layout-scratch');
});

test('the page raised no script errors', () => {
  assert.deepEqual(
    pageErrors.filter((e) => !/Failed to load resource/.test(e)),
    [],
  );
});
