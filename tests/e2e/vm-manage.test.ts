// Delete, clone, snapshots and autostart in the UI, end to end: a real `spindle serve`, Debian's
// Chromium, real image files and the real qemu-img (no guest: every VM stays stopped). Every step
// clicks visible controls; the dialogs and the snapshot timeline are checked for overflow and
// photographed at 1024 and 1920 px.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { startApp, apiCall as callApi, type App } from './lib/serve.js';
import { click, check, uncheck, fill, until, checkLayouts } from './lib/ui.js';
import { tempDir } from '../lib/loop.js';

let app: App;
let page: Page;
let tmp: ReturnType<typeof tempDir>;
let images: string;
let userFile: string;
const WIDTHS = [1024, 1920] as const;

function image(path: string): string {
  const fd = openSync(path, 'w');
  writeSync(fd, Buffer.alloc(65536, 0x11), 0, 65536, 1 << 20);
  closeSync(fd);
  execFileSync('truncate', ['-s', '32M', path]);
  return path;
}

const apiCall = (method: string, params: unknown) => callApi(app.served, method, params);
const vmByName = async (name: string) =>
  (await apiCall('vm.list', {})).result.vms.find((v: { config: { name: string } }) => v.config.name === name);

async function openVm(name: string): Promise<void> {
  await click(page.getByRole('navigation').getByRole('button', { name: new RegExp(`^${name}`) }));
  await page.getByRole('heading', { name, exact: true }).waitFor();
}

before(async () => {
  tmp = tempDir('spindle-e2e-manage-');
  app = await startApp({ width: 1280, height: 800 }, 'light');
  page = app.page;
  images = join(app.served.env.XDG_DATA_HOME!, 'spindle', 'images');
  mkdirSync(images, { recursive: true });
  userFile = image(join(tmp.path, 'mine.img'));
  const r = await apiCall('vm.create', {
    name: 'Source',
    display: 'none',
    disks: [{ path: image(join(images, 'source-d0.img')) }, { path: userFile }],
  });
  assert.ok(r.ok, r.error?.message);
  await page.reload();
});

after(async () => {
  await app?.close();
  tmp?.cleanup();
});

test('Start Spindle at login: ticking writes the XDG autostart entry, unticking removes it', async () => {
  const entry = join(app.served.env.XDG_CONFIG_HOME!, 'autostart', 'spindle.desktop');
  const box = page.getByLabel('Start Spindle at login');
  await box.waitFor();
  assert.equal(existsSync(entry), false, 'nothing written before asked');
  await check(box);
  await until(
    'the entry to be written',
    async () => existsSync(entry),
    (v) => v,
  );
  assert.match(readFileSync(entry, 'utf8'), /^Exec=\S+ \S+bin\/spindle\.js serve --headless$/m);
  await page.getByText(`written: ${entry}`).waitFor();
  await checkLayouts(page, 'manage-login-autostart', { widths: WIDTHS });
  await uncheck(box);
  await until(
    'the entry to be removed',
    async () => existsSync(entry),
    (v) => !v,
  );
});

test('Start when Spindle starts: the VM page checkbox saves autostart', async () => {
  await openVm('Source');
  await check(page.getByLabel('Start when Spindle starts'));
  await until(
    'autostart saved',
    async () => (await vmByName('Source')).config.autostart,
    (v) => v === true,
  );
  await uncheck(page.getByLabel('Start when Spindle starts'));
  await until(
    'autostart off',
    async () => (await vmByName('Source')).config.autostart,
    (v) => v === false,
  );
});

test('Clone: a full copy and a linked clone from the dialog', async () => {
  await openVm('Source');
  await click(page.getByRole('button', { name: 'Clone…' }));
  let dialog = page.getByRole('dialog', { name: 'Clone Source' });
  await fill(dialog.getByLabel('Name of the new VM'), 'source');
  await dialog.getByText("There is already a VM named 'Source'.").waitFor();
  assert.equal(await dialog.getByRole('button', { name: 'Clone' }).isDisabled(), true);
  await fill(dialog.getByLabel('Name of the new VM'), 'Copy');
  await checkLayouts(page, 'manage-clone-dialog', { widths: WIDTHS });
  await click(dialog.getByRole('button', { name: 'Clone' }));
  await page.getByRole('heading', { name: 'Copy', exact: true }).waitFor();
  const copy = await vmByName('Copy');
  assert.deepEqual(
    copy.config.disks.map((d: { path: string }) => d.path),
    [join(images, 'copy-d0.img'), join(images, 'copy-d1.img')],
  );

  await openVm('Source');
  await click(page.getByRole('button', { name: 'Clone…' }));
  dialog = page.getByRole('dialog', { name: 'Clone Source' });
  await fill(dialog.getByLabel('Name of the new VM'), 'Linked');
  await check(dialog.getByRole('radio', { name: /Linked: a small qcow2 overlay/ }));
  await click(dialog.getByRole('button', { name: 'Clone' }));
  await page.getByRole('heading', { name: 'Linked', exact: true }).waitFor();
  const linked = await vmByName('Linked');
  assert.equal(linked.config.disks[0].backing, join(images, 'source-d0.img'));
  // The source is now warned before a start would write its base, and may decline.
  await openVm('Source');
  await click(page.getByRole('button', { name: 'Start', exact: true }));
  const warn = page.getByRole('alertdialog', { name: 'Start Source anyway?' });
  await warn.getByText(/Disk d0 of 'Source' is the base of the linked clone 'Linked'/).waitFor();
  await checkLayouts(page, 'manage-base-warning', { widths: WIDTHS });
  await click(warn.getByRole('button', { name: 'Don’t start' }));
  await warn.waitFor({ state: 'detached' });
  assert.equal((await vmByName('Source')).state, 'stopped');
});

test('Snapshots: a raw VM is told why; on qcow2 disks the timeline takes, reverts and deletes', async () => {
  await openVm('Source');
  await click(page.getByRole('tab', { name: 'Snapshots' }));
  await page
    .getByTestId('snapshot-error')
    .filter({ hasText: /Snapshots need qcow2 images/ })
    .waitFor();

  await openVm('Linked');
  await click(page.getByRole('tab', { name: 'Snapshots' }));
  const panel = page.getByRole('tabpanel');
  await fill(panel.getByLabel('Name'), 'clean install');
  await click(panel.getByRole('button', { name: 'Take snapshot' }));
  await panel.getByTestId('snapshot').filter({ hasText: 'clean install' }).waitFor();
  await fill(panel.getByLabel('Name'), 'after update');
  await click(panel.getByRole('button', { name: 'Take snapshot' }));
  await panel.getByTestId('snapshot').filter({ hasText: 'after update' }).waitFor();
  assert.deepEqual(await panel.getByTestId('snapshot').locator('strong').allTextContents(), ['clean install', 'after update']);
  await checkLayouts(page, 'manage-snapshots', { widths: WIDTHS });

  await click(panel.getByTestId('snapshot').filter({ hasText: 'clean install' }).getByRole('button', { name: 'Revert…' }));
  const ask = page.getByRole('alertdialog', { name: "Revert Linked to 'clean install'?" });
  await checkLayouts(page, 'manage-snapshot-revert', { widths: WIDTHS });
  await click(ask.getByRole('button', { name: 'Revert' }));
  await ask.waitFor({ state: 'detached' });
  await click(panel.getByTestId('snapshot').filter({ hasText: 'after update' }).getByRole('button', { name: 'Delete…' }));
  await click(page.getByRole('alertdialog').getByRole('button', { name: 'Delete snapshot' }));

  await until(
    'one snapshot left',
    async () => [await panel.getByTestId('snapshot').count(), await panel.textContent()],
    ([n]) => n === 1,
  );
  const r = await apiCall('snapshot.list', { id: 'linked' });
  assert.deepEqual(
    r.result.snapshots.map((s: { name: string }) => s.name),
    ['clean install'],
  );
});

test('Delete: asks about the disk images and says which go; your own file stays', async () => {
  await openVm('Copy');
  await click(page.getByRole('button', { name: 'Delete…' }));
  const dialog = page.getByRole('alertdialog', { name: 'Delete Copy?' });
  await check(dialog.getByLabel(/Also delete the disk images Spindle made/));
  const items = await dialog.getByRole('listitem').allTextContents();
  assert.match(items[0]!, /copy-d0\.img\s*deleted \(Spindle made it\)/);
  await checkLayouts(page, 'manage-delete-dialog', { widths: WIDTHS });
  await click(dialog.getByRole('button', { name: 'Delete VM and images' }));

  await page.getByRole('heading', { name: 'Pick a VM' }).waitFor();
  assert.equal(existsSync(join(images, 'copy-d0.img')), false);
  assert.equal(existsSync(join(images, 'copy-d1.img')), false);

  // Source: its own-file disk is labelled as kept; deleting without images touches nothing.
  await openVm('Source');
  await click(page.getByRole('button', { name: 'Delete…' }));
  const d2 = page.getByRole('alertdialog', { name: 'Delete Source?' });
  assert.match((await d2.getByRole('listitem').allTextContents())[1]!, /mine\.img\s*kept \(your own file\)/);
  await click(d2.getByRole('button', { name: 'Delete VM' }));
  await page.getByRole('heading', { name: 'Pick a VM' }).waitFor();
  assert.ok(existsSync(join(images, 'source-d0.img')) && existsSync(userFile));
});
