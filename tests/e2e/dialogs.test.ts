// A new user's first steps in the dialogs, end to end: a real `spindle serve`
// with a fresh data directory, Debian's Chromium, real image files (sparse, written, vmdk made by
// qemu-img, an ISO 9660 image) and a real loop device. No guest is needed: every VM stays stopped.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { startApp, openApp, apiCall as callApi, type App } from './lib/serve.js';
import { click, check, fill, select, disclose, until, checkLayouts } from './lib/ui.js';
import { tempDir, makeFile, attachLoop, mountFs, type LoopDevice } from '../lib/loop.js';

// The callbacks given to evaluate() run in the page (Chromium), not in Node: its globals, loosely typed here.
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any
type HTMLDetailsElement = any; // eslint-disable-line @typescript-eslint/no-explicit-any

let app: App;
let page: Page;
let pageErrors: string[];
let tmp: ReturnType<typeof tempDir>;
let loop: LoopDevice;
let sparseFile: string;
let writtenFile: string;
let vmdkFile: string;
let isoFile: string;

/** A minimal ISO 9660 image: the primary volume descriptor ('CD001' at 0x8001) and the set terminator. */
function makeIso(path: string): string {
  const b = Buffer.alloc(1 << 20);
  b[0x8000] = 1;
  b.write('CD001', 0x8001, 'latin1');
  b[0x8006] = 1;
  b[0x8800] = 255;
  b.write('CD001', 0x8801, 'latin1');
  b[0x8806] = 1;
  writeFileSync(path, b);
  return path;
}

before(async () => {
  tmp = tempDir('spindle-e2e-dialogs-');
  loop = attachLoop(makeFile(join(tmp.path, 'loop-backing.img'), 32 << 20, { written: true }));
  sparseFile = makeFile(join(tmp.path, 'sparse.img'), 128 << 20);
  writtenFile = makeFile(join(tmp.path, 'written.img'), 32 << 20, { written: true });
  vmdkFile = join(tmp.path, 'disk.vmdk');
  const q = spawnSync('qemu-img', ['create', '-q', '-f', 'vmdk', vmdkFile, '64M'], { encoding: 'utf8' });
  assert.equal(q.status, 0, q.stderr);
  isoFile = makeIso(join(tmp.path, 'installer.iso'));
  app = await startApp({ width: 1280, height: 800 }, 'light');
  ({ page, errors: pageErrors } = app);
});

after(async () => {
  await app?.close();
  loop?.detach();
  tmp?.cleanup();
});

const apiCall = (method: string, params: unknown) => callApi(app.served, method, params);
const vmByName = async (name: string) =>
  (await apiCall('vm.list', {})).result.vms.find((v: { config: { name: string } }) => v.config.name === name);

async function openVm(name: string, tab?: 'Overview' | 'Disks' | 'Performance' | 'Console'): Promise<void> {
  await click(page.getByRole('navigation').getByRole('button', { name: new RegExp(`^${name}`) }));
  await page.getByRole('heading', { name, exact: true }).waitFor();
  if (tab) await click(page.getByRole('tab', { name: tab }));
}

test('New VM: a name already used, in any letter case, is refused as you type', async () => {
  await click(page.getByRole('navigation').getByRole('button', { name: 'New VM' }));
  let dialog = page.getByRole('dialog', { name: 'New virtual machine' });
  await fill(dialog.getByLabel('Name'), 'Alpha Box');
  await check(dialog.getByLabel('its first disk'));
  await click(dialog.getByRole('button', { name: 'Create VM' }));
  await page.getByRole('heading', { name: 'Alpha Box', exact: true }).waitFor();

  await click(page.getByRole('navigation').getByRole('button', { name: 'New VM' }));
  dialog = page.getByRole('dialog', { name: 'New virtual machine' });
  await fill(dialog.getByLabel('Name'), 'alpha BOX');
  const taken = dialog.getByTestId('name-taken');
  await taken.waitFor();
  assert.match((await taken.textContent())!, /already used by the VM 'Alpha Box'/);
  assert.equal(await dialog.getByRole('button', { name: 'Create VM' }).isDisabled(), true);
  await fill(dialog.getByLabel('Name'), 'alpha box 2');
  await taken.waitFor({ state: 'detached' });
  assert.equal(await dialog.getByRole('button', { name: 'Create VM' }).isDisabled(), false);
});

test('Esc closes a dialog and focus returns to the button that opened it', async () => {
  await page.keyboard.press('Escape');
  await page.getByRole('dialog').waitFor({ state: 'detached' });
  const focused = await page.evaluate(() => document.activeElement?.textContent?.trim());
  assert.equal(focused, 'New VM');
});

test('a kernel-path error goes away when the boot source changes', async () => {
  await click(page.getByRole('navigation').getByRole('button', { name: 'New VM' }));
  const dialog = page.getByRole('dialog', { name: 'New virtual machine' });
  await fill(dialog.getByLabel('Name'), 'kernel test');
  await check(dialog.getByLabel('a kernel and initrd'));
  await fill(dialog.getByLabel('Kernel', { exact: true }), '/nonexistent/vmlinuz');
  await click(dialog.getByRole('button', { name: 'Create VM' }));
  await dialog.getByRole('alert').filter({ hasText: '/nonexistent/vmlinuz' }).waitFor();
  await check(dialog.getByLabel('its first disk'));
  await dialog.getByRole('alert').waitFor({ state: 'detached' });
  await click(dialog.getByRole('button', { name: 'Cancel' }));
});

test('renaming a VM to a used name is refused as you type', async () => {
  const r = await apiCall('vm.create', { name: 'Beta', display: 'none' });
  assert.ok(r.ok, r.error?.message);
  await openVm('Beta', 'Overview');
  await click(page.getByRole('button', { name: 'Rename…' }));
  const name = page.getByLabel('New name');
  await fill(name, 'ALPHA box');
  await page
    .getByTestId('name-taken')
    .filter({ hasText: /already used by the VM 'Alpha Box'/ })
    .waitFor();
  await checkLayouts(page, 'dialogs-rename-taken');
  assert.equal(await page.getByRole('button', { name: 'Save name' }).isDisabled(), true);
  await fill(name, 'Beta two');
  await click(page.getByRole('button', { name: 'Save name' }));
  await page.getByRole('heading', { name: 'Beta two', exact: true }).waitFor();
  assert.equal((await vmByName('Beta two'))?.config.id, r.result.config.id);
});

test('the first new image works on a fresh install: images/ is made (0700), and nowait is saved as shown', async () => {
  await openVm('Alpha Box', 'Disks');
  await click(page.getByRole('button', { name: 'Add disk…' }));
  const dialog = page.getByRole('dialog');
  const suggested = await dialog.getByLabel('Path of the new image').inputValue();
  const imagesDir = join(app.served.env.XDG_DATA_HOME!, 'spindle', 'images');
  assert.equal(suggested, join(imagesDir, `${(await vmByName('Alpha Box')).config.id}-d0.img`));
  assert.equal(existsSync(imagesDir), false, 'a fresh install has no images/ yet');
  await fill(dialog.getByLabel('Size (GiB)'), '1');
  await disclose(dialog, 'Details');
  const shownNowait = await dialog.getByLabel('Nowait').inputValue();
  await click(dialog.getByRole('button', { name: 'Create and attach' }));
  await dialog.waitFor({ state: 'detached' });
  assert.equal(statSync(imagesDir).mode & 0o777, 0o700);
  const disk = (await vmByName('Alpha Box')).config.disks[0];
  assert.equal(disk.path, suggested);
  assert.equal(disk.nowait, shownNowait, 'the nowait the dialog showed is the one saved');
  const row = page.getByTestId('disk-row').filter({ hasText: suggested });
  await disclose(row, 'Details');
  assert.equal(await row.getByLabel('Nowait').inputValue(), shownNowait);
  // The stopped VM's disk shows its size (stat through the API), not "—".
  assert.equal((await row.getByTestId('disk-size').textContent())?.trim(), '1.0 GiB');
});

test('a host device keeps the nowait the dialog showed', async () => {
  await click(page.getByRole('button', { name: 'Add disk…' }));
  const dialog = page.getByRole('dialog');
  await check(dialog.getByLabel('Host block device'));
  // Loop devices show the file behind them.
  const entry = dialog.locator(`[data-testid=device][data-path="${loop.device}"]`);
  await entry.waitFor();
  assert.ok((await entry.textContent())!.includes(`loop device over ${loop.backingFile}`), (await entry.textContent()) ?? '');
  await check(entry.getByRole('radio'));
  await disclose(dialog, 'Details');
  const shownNowait = await dialog.getByLabel('Nowait').inputValue();
  await click(dialog.getByRole('button', { name: 'Attach' }));
  await dialog.waitFor({ state: 'detached' });
  const disk = (await vmByName('Alpha Box')).config.disks.find((d: { path: string }) => d.path === loop.device);
  assert.equal(disk.nowait, shownNowait);
});

test('a vmdk file is refused in the dialog with the sentence naming its format, never badged safe; import is offered', async () => {
  await click(page.getByRole('button', { name: 'Add disk…' }));
  const dialog = page.getByRole('dialog');
  await check(dialog.getByLabel('Existing image file'));
  await fill(dialog.getByLabel('Image file', { exact: true }), vmdkFile);
  await dialog.getByLabel('Image file', { exact: true }).press('Tab');
  const refusal = dialog.getByTestId('format-refusal');
  await refusal.waitFor();
  assert.match((await refusal.textContent())!, /vmdk/);
  assert.equal(await dialog.getByText(/safe for native/i).count(), 0);
  assert.equal(await dialog.getByRole('button', { name: 'Attach' }).isDisabled(), true);
  await dialog.getByRole('button', { name: 'Import it into a new image instead' }).waitFor();
  await checkLayouts(page, 'dialogs-vmdk-refused');
  await click(dialog.getByRole('button', { name: 'Cancel' }));
  await dialog.waitFor({ state: 'detached' });
  assert.equal(
    (await vmByName('Alpha Box')).config.disks.some((d: { path: string }) => d.path === vmdkFile),
    false,
  );
});

test('an ISO picked in Add disk is attached as a read-only CD-ROM, not a writable virtio disk', async () => {
  await click(page.getByRole('button', { name: 'Add disk…' }));
  const dialog = page.getByRole('dialog');
  await check(dialog.getByLabel('Existing image file'));
  await fill(dialog.getByLabel('Image file', { exact: true }), isoFile);
  await dialog.getByLabel('Image file', { exact: true }).press('Tab');
  await dialog
    .getByTestId('iso-note')
    .filter({ hasText: /read-only CD-ROM/ })
    .waitFor();
  await checkLayouts(page, 'dialogs-iso');
  await click(dialog.getByRole('button', { name: 'Attach as CD-ROM' }));
  await dialog.waitFor({ state: 'detached' });
  const vm = await vmByName('Alpha Box');
  assert.deepEqual(vm.config.boot, { kind: 'iso', path: isoFile });
  assert.equal(
    vm.config.disks.some((d: { path: string }) => d.path === isoFile),
    false,
  );
  await page.getByTestId('cdrom-row').filter({ hasText: isoFile }).waitFor();
});

test('the advisor gives one verdict per disk with one sentence, the details behind a disclosure; the probe verdict persists', async () => {
  for (const path of [writtenFile, sparseFile]) {
    await click(page.getByRole('button', { name: 'Add disk…' }));
    const dialog = page.getByRole('dialog');
    await check(dialog.getByLabel('Existing image file'));
    await fill(dialog.getByLabel('Image file', { exact: true }), path);
    await dialog.getByLabel('Image file', { exact: true }).press('Tab');
    await dialog.getByTestId('advisor-badge').waitFor();
    assert.equal(await dialog.getByTestId('advisor-badge').count(), 1);
    await click(dialog.getByRole('button', { name: 'Attach' }));
    await dialog.waitFor({ state: 'detached' });
  }
  for (const path of [writtenFile, sparseFile]) {
    const row = page.getByTestId('disk-row').filter({ hasText: path });
    const advisor = row.getByTestId('advisor');
    await advisor.getByTestId('advisor-badge').waitFor();
    assert.equal(await advisor.getByTestId('advisor-badge').count(), 1, 'one verdict');
    const why = (await advisor.getByTestId('advisor-why').textContent())!.trim();
    assert.equal(why.split(/(?<=[.!?])\s+(?=[A-Z])/).length, 1, `one sentence why: ${why}`);
    assert.equal(await row.getByText(/--probe/).count(), 0, 'no CLI flag beside the Probe button');
    // The details are closed until asked for.
    assert.equal(await advisor.locator('details').evaluate((d) => (d as HTMLDetailsElement).open), false);
    // The Aio control is described by a real sentence.
    await disclose(row, 'Details');
    const aioHelp = await row
      .getByLabel('Aio')
      .evaluate((el) => document.getElementById(el.getAttribute('aria-describedby') ?? '')?.textContent ?? '');
    assert.notEqual(aioHelp.trim(), 'Aio mode.');
    assert.ok(aioHelp.trim().split(/\s+/).length >= 6, `Aio help: ${aioHelp}`);
  }
  const sparseRow = page.getByTestId('disk-row').filter({ hasText: sparseFile });
  assert.match((await sparseRow.getByTestId('advisor-badge').textContent())!, /sparse/);
  const writtenRow = page.getByTestId('disk-row').filter({ hasText: writtenFile });
  assert.match((await writtenRow.getByTestId('advisor-badge').textContent())!, /safe for native/);
  // Probe both; one verdict each, never "not safe" and "native safe" side by side.
  for (const row of [sparseRow, writtenRow]) {
    await click(row.getByRole('button', { name: 'Probe' }));
    await row.getByTestId('probe-badge').waitFor({ timeout: 120_000 });
    const verdict = (await row.getByTestId('advisor-verdict').textContent())!;
    assert.ok(!(/not safe/i.test(verdict) && /native safe/i.test(verdict)), verdict);
    assert.equal(await row.getByTestId('advisor-badge').count(), 1);
  }
  const probeText = (await writtenRow.getByTestId('probe-badge').textContent())!.trim();
  await disclose(writtenRow.getByTestId('advisor'), 'Why');
  await writtenRow.scrollIntoViewIfNeeded();
  await checkLayouts(page, 'dialogs-advisor-probed', { prepare: () => writtenRow.scrollIntoViewIfNeeded() });
  // The probe's verdict survives a reload (kept through the API).
  await page.reload();
  await page.getByRole('status').filter({ hasText: 'Connected' }).waitFor();
  const again = page.getByTestId('disk-row').filter({ hasText: writtenFile }).getByTestId('probe-badge');
  await again.waitFor();
  assert.equal((await again.textContent())!.trim(), probeText);
});

test('Preallocate on a sparse disk allocates the whole file and the verdict turns safe for native', async () => {
  const row = page.getByTestId('disk-row').filter({ hasText: sparseFile });
  await row.scrollIntoViewIfNeeded();
  assert.match((await row.getByTestId('advisor-badge').textContent())!, /sparse/);
  const allocated = (): number => statSync(sparseFile).blocks * 512;
  assert.ok(allocated() < statSync(sparseFile).size / 2, 'sparse before');
  await click(row.getByRole('button', { name: 'Preallocate' }));
  await row
    .getByTestId('advisor-badge')
    .filter({ hasText: /safe for native/ })
    .waitFor({ timeout: 120_000 });
  assert.ok(allocated() >= statSync(sparseFile).size, `every block allocated: ${allocated()} of ${statSync(sparseFile).size} bytes`);
  assert.equal(await row.getByRole('button', { name: 'Preallocate' }).count(), 0, 'nothing left to preallocate');
});

test('New image, preallocated: the file is created fully allocated at the size asked, attached, and badged safe for native', async () => {
  await click(page.getByRole('button', { name: 'Add disk…' }));
  const dialog = page.getByRole('dialog');
  await check(dialog.getByLabel('New image file'));
  const path = join(tmp.path, 'prealloc.img');
  await fill(dialog.getByLabel('Path of the new image'), path);
  await fill(dialog.getByLabel('Size (GiB)'), '0.0625');
  await check(dialog.getByLabel(/Preallocated: uses the full size now/));
  await click(dialog.getByRole('button', { name: 'Create and attach' }));
  await dialog.waitFor({ state: 'detached' });
  const st = statSync(path);
  assert.equal(st.size, 64 << 20, 'the size asked');
  assert.ok(st.blocks * 512 >= st.size, `fully allocated: ${st.blocks * 512} of ${st.size} bytes`);
  const row = page.getByTestId('disk-row').filter({ hasText: path });
  await row
    .getByTestId('advisor-badge')
    .filter({ hasText: /safe for native/ })
    .waitFor({ timeout: 60_000 });
});

test('the device picker disables a mounted device with the reason, and offers a free one', async () => {
  const mounted = mountFs('ext4', 32, { base: tmp.path });
  try {
    await click(page.getByRole('button', { name: 'Add disk…' }));
    const dialog = page.getByRole('dialog');
    await check(dialog.getByLabel('Host block device'));
    const busy = dialog.locator(`[data-testid=device][data-path="${mounted.device.device}"]`);
    await busy.waitFor();
    assert.equal(await busy.getByRole('radio').isDisabled(), true, 'a mounted device cannot be picked');
    assert.match((await busy.textContent())!, new RegExp(`mounted at ${mounted.mountpoint}`));
    assert.match((await busy.locator('.why').textContent())!, /mounted/i, 'the reason is shown');
    const free = dialog.locator(`[data-testid=device][data-path="${loop.device}"]`);
    assert.equal(await free.getByRole('radio').isDisabled(), false, 'the free loop device can be picked');
    await click(dialog.getByRole('button', { name: 'Cancel' }));
    await dialog.waitFor({ state: 'detached' });
  } finally {
    mounted.cleanup();
  }
});

test('a reopened tab lands on the same VM and tab', async () => {
  await openVm('Beta two', 'Console');
  const url = page.url();
  assert.match(url, /#\/vm\/[a-z0-9-]+\/console$/);
  const { page: second } = await openApp(page.context(), url, { width: 1280, height: 800 }, 'light');
  try {
    await second.getByRole('heading', { name: 'Beta two', exact: true }).waitFor();
    assert.equal(await second.getByRole('tab', { name: 'Console' }).getAttribute('aria-selected'), 'true');
    // Back in the first tab, the browser's back button returns to the previous tab of the VM.
    await page.goBack();
    await until(
      'the Overview tab after Back',
      () => page.getByRole('tab', { name: 'Overview' }).getAttribute('aria-selected'),
      (v) => v === 'true',
    );
  } finally {
    await second.close();
  }
});

test('plain-language presets: safe default, fastest (measured), disposable; the modes behind Details', async () => {
  await openVm('Alpha Box', 'Disks');
  const row = page.getByTestId('disk-row').filter({ hasText: writtenFile });
  const presets = row.getByRole('radiogroup', { name: /How this disk uses the host/ });
  const safe = presets.getByRole('radio', { name: /Safe default/ });
  const fastest = presets.getByRole('radio', { name: /Fastest on this disk \(measured\)/ });
  const disposable = presets.getByRole('radio', { name: /Disposable \(unsafe\)/ });
  assert.equal(await safe.isChecked(), true);
  // Each preset says, in one sentence, what it does to speed, host memory and a host crash.
  for (const id of ['preset-safe', 'preset-disposable']) {
    const text = (await row.getByTestId(id).textContent())!;
    assert.match(text, /memory/);
    assert.match(text, /crash/);
  }
  // Not measured yet: the measured preset says how to measure it.
  assert.equal(await fastest.isDisabled(), true);
  assert.match((await row.getByTestId('preset-fastest').textContent())!, /Compare aio modes/);
  await check(disposable);
  await until(
    'cache unsafe saved',
    async () => (await vmByName('Alpha Box')).config.disks.find((d: { path: string }) => d.path === writtenFile).cache,
    (c) => c === 'unsafe',
  );
  await row.getByTestId('unsafe-warning').waitFor();
  await check(safe);
  await until(
    'cache writeback saved',
    async () => (await vmByName('Alpha Box')).config.disks.find((d: { path: string }) => d.path === writtenFile).cache,
    (c) => c === 'writeback',
  );
  // Changing a mode in Details to something no preset names leaves no preset checked.
  await disclose(row, 'Details');
  await select(row.getByLabel('Cache'), 'writethrough');
  await until(
    'no preset checked',
    async () => (await safe.isChecked()) || (await disposable.isChecked()),
    (v) => v === false,
  );
});

test('the page raised no script errors', () => {
  assert.deepEqual(
    pageErrors.filter((e) => !/Failed to load resource/.test(e)),
    [],
  );
});
