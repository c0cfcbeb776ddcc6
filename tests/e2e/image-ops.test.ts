// Disk images in the app, end to end: a real `spindle serve`, Chromium, qemu-img. "Add disk"
// creates a qcow2 (raw is the default, and says why), attaches an overlay whose row shows its
// backing chain, imports a vmdk with progress; the disk row grows a disk and refuses to shrink it
// with a sentence. Only visible controls are clicked; screenshots at 1024 and 1920 px.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { startApp, apiCall as callApi, ARTIFACTS, type App } from './lib/serve.js';
import { click, check, fill, until, checkLayouts } from './lib/ui.js';
import { tempDir } from '../lib/loop.js';

let app: App;
let page: Page;
let tmp: ReturnType<typeof tempDir>;
const WIDTHS = [1024, 1920];

function qemuImg(...args: string[]): void {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `qemu-img ${args.join(' ')}: ${r.stderr}`);
}

before(async () => {
  tmp = tempDir('spindle-e2e-images-', '/var/tmp');
  app = await startApp({ width: 1280, height: 800 }, 'light');
  ({ page } = app);
});

after(async () => {
  await app?.close();
  tmp?.cleanup();
});

const apiCall = (method: string, params: unknown) => callApi(app.served, method, params);
const vmNamed = async (name: string) =>
  (await apiCall('vm.list', {})).result.vms.find((v: { config: { name: string } }) => v.config.name === name);

test('Add disk creates a qcow2, attaches an overlay showing its backing chain, and imports a vmdk with progress', async () => {
  const r = await apiCall('vm.create', { name: 'Images', display: 'none', network: { user: false } });
  assert.ok(r.ok, r.error?.message);
  await click(page.getByRole('navigation').getByRole('button', { name: /^Images/ }));
  await page.getByRole('heading', { name: 'Images', exact: true }).waitFor();
  await click(page.getByRole('tab', { name: 'Disks' }));

  // ── New image: raw is the default and the dialog says why; qcow2 is one click away.
  await click(page.getByRole('button', { name: 'Add disk…' }));
  let dialog = page.getByRole('dialog');
  assert.equal(await dialog.getByLabel('raw (default)').isChecked(), true);
  assert.match((await dialog.getByTestId('format-note').textContent())!, /Raw is the default/);
  await check(dialog.getByLabel('qcow2', { exact: true }));
  const path = await dialog.getByLabel('Path of the new image').inputValue();
  assert.match(path, /-d0\.qcow2$/, 'the suggested name follows the format');
  await fill(dialog.getByLabel('Size (GiB)'), '1');
  await checkLayouts(page, 'image-ops-new-qcow2', { widths: WIDTHS });
  await click(dialog.getByRole('button', { name: 'Create and attach' }));
  await dialog.waitFor({ state: 'detached' });
  const d0 = (await vmNamed('Images')).config.disks[0];
  assert.deepEqual([d0.path, d0.format], [path, 'qcow2']);
  const row0 = page.getByTestId('disk-row').filter({ hasText: path });
  assert.equal((await row0.getByTestId('disk-format').textContent())?.trim(), 'qcow2');
  await until(
    'the new qcow2 to show 1 GiB',
    async () => (await row0.getByTestId('disk-size').textContent())?.trim(),
    (t) => t === '1.0 GiB',
  );

  // ── An overlay made by qemu-img: its row shows the chain under it.
  const base = join(tmp.path, 'base.qcow2');
  const overlay = join(tmp.path, 'overlay.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '256M');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay);
  await click(page.getByRole('button', { name: 'Add disk…' }));
  dialog = page.getByRole('dialog');
  await check(dialog.getByLabel('Existing image file'));
  await fill(dialog.getByLabel('Image file', { exact: true }), overlay);
  await dialog.getByLabel('Image file', { exact: true }).press('Tab');
  await dialog.getByTestId('advisor-badge').waitFor();
  await click(dialog.getByRole('button', { name: 'Attach' }));
  await dialog.waitFor({ state: 'detached' });
  const row1 = page.getByTestId('disk-row').filter({ hasText: overlay });
  const chain = row1.getByTestId('backing-chain');
  await chain.waitFor();
  assert.match((await chain.textContent())!, new RegExp(`Backing chain: ${base.replace(/[.]/g, '\\.')} \\(qcow2\\)`));
  await checkLayouts(page, 'image-ops-disk-rows', { widths: WIDTHS });

  // ── Import a vmdk (with data, so qemu-img takes a moment) into a new raw image: progress shows.
  const vmdk = join(tmp.path, 'appliance.vmdk');
  const twin = join(tmp.path, 'twin.raw');
  qemuImg('create', '-q', '-f', 'raw', twin, '256M');
  const w = spawnSync('qemu-io', ['-f', 'raw', '-c', 'write -P 0x42 0 200M', twin], { encoding: 'utf8' });
  assert.equal(w.status, 0, w.stderr);
  qemuImg('convert', '-q', '-f', 'raw', '-O', 'vmdk', twin, vmdk);
  await click(page.getByRole('button', { name: 'Add disk…' }));
  dialog = page.getByRole('dialog');
  await check(dialog.getByLabel('Import (vmdk, vdi, vhdx, vhd…)'));
  await fill(dialog.getByLabel('Image to import (vmdk, vdi, vhdx, vhd, qcow2 or raw)'), vmdk);
  const dest = await dialog.getByLabel('New image (never overwritten)').inputValue();
  assert.match(dest, /-d2\.img$/);
  await checkLayouts(page, 'image-ops-import', { widths: WIDTHS });
  await click(dialog.getByRole('button', { name: 'Import and attach' }));
  await dialog.getByTestId('import-progress').waitFor();
  await page.screenshot({ path: join(ARTIFACTS, 'image-ops-import-progress.png') });
  await dialog.waitFor({ state: 'detached', timeout: 120_000 });
  const d2 = (await vmNamed('Images')).config.disks.find((d: { path: string }) => d.path === dest);
  assert.equal(d2.format, 'raw');
  assert.equal(statSync(dest).size, 256 << 20);
  const cmp = spawnSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'raw', twin, dest]);
  assert.equal(cmp.status, 0, 'the imported image has the vmdk contents');
});

test('the disk row grows a stopped disk and refuses to shrink it with a sentence', async () => {
  const d0 = (await vmNamed('Images')).config.disks[0];
  const row = page.getByTestId('disk-row').filter({ hasText: d0.path });
  await click(row.getByRole('button', { name: 'Resize…' }));
  await fill(row.getByTestId('resize-gib'), '2');
  await click(row.getByRole('button', { name: 'Grow' }));
  await until(
    'the row to show 2 GiB',
    async () => (await row.getByTestId('disk-size').textContent())?.trim(),
    (t) => t === '2.0 GiB',
  );
  const info = spawnSync('qemu-img', ['info', '--output=json', '-U', d0.path], { encoding: 'utf8' });
  assert.equal(JSON.parse(info.stdout)['virtual-size'], 2 * 1024 ** 3);

  await click(row.getByRole('button', { name: 'Resize…' }));
  await fill(row.getByTestId('resize-gib'), '0.5');
  await click(row.getByRole('button', { name: 'Grow' }));
  const err = row.getByTestId('resize-error');
  await err.waitFor();
  assert.match((await err.textContent())!, /shrinking a disk is refused/);
  await checkLayouts(page, 'image-ops-resize-refused', { widths: WIDTHS });
  assert.equal(
    JSON.parse(spawnSync('qemu-img', ['info', '--output=json', '-U', d0.path], { encoding: 'utf8' }).stdout)['virtual-size'],
    2 * 1024 ** 3,
  );
});
