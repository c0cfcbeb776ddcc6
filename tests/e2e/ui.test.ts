// The desktop app end to end: a real `spindle serve` (real backend: VM manager, QEMU, the disk
// host), Debian's Chromium driving the built renderer, a real loop device and a real sparse file.
// Screenshots go to tests/artifacts/ (1280×800 and 1920×1080, light and dark).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import type { Page } from 'playwright-core';
import { startServe, launchChromium, openApp, ARTIFACTS, type Served, type Theme } from './lib/serve.js';
import { tempDir, makeFile, attachLoop, type LoopDevice } from '../lib/loop.js';
import { buildInitramfs, READY } from '../guest/vm-guest.js';

const SIZES = [
  { width: 1280, height: 800 },
  { width: 1920, height: 1080 },
];
const THEMES: Theme[] = ['light', 'dark'];

let served: Served;
let chromium: Awaited<ReturnType<typeof launchChromium>>;
let tmp: ReturnType<typeof tempDir>;
let loop: LoopDevice;
let sparseFile: string;
let guest: ReturnType<typeof buildInitramfs>;
let page: Page;
let pageErrors: string[];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  tmp = tempDir('spindle-e2e-disks-');
  loop = attachLoop(makeFile(join(tmp.path, 'loop-backing.img'), 64 << 20, { written: true }));
  sparseFile = makeFile(join(tmp.path, 'sparse.img'), 256 << 20);
  guest = buildInitramfs();
  served = await startServe();
  chromium = await launchChromium();
  ({ page, errors: pageErrors } = await openApp(chromium.context, served.url, SIZES[0], 'light'));
});

after(async () => {
  await chromium?.close();
  await served?.stop(); // shuts down VMs and drains disks
  loop?.detach();
  guest?.cleanup();
  tmp?.cleanup();
});

/** Screenshots of the current page at both sizes and in both themes. */
async function shots(name: string): Promise<void> {
  for (const size of SIZES) {
    await page.setViewportSize(size);
    for (const theme of THEMES) {
      await page.emulateMedia({ colorScheme: theme });
      await page.waitForTimeout(150);
      await page.screenshot({ path: join(ARTIFACTS, `${name}-${size.width}x${size.height}-${theme}.png`) });
    }
  }
  await page.setViewportSize(SIZES[0]);
  await page.emulateMedia({ colorScheme: 'light' });
}

/** One API call over the serve-mode WebSocket, as a client other than the UI. */
async function apiCall(method: string, params: unknown): Promise<{ ok: boolean; result?: any; error?: { code: string; message: string } }> {
  const ws = new WebSocket(`ws://127.0.0.1:${served.port}/api?token=${served.token}`);
  await new Promise((ok, fail) => ws.once('open', ok).once('error', fail));
  try {
    return await new Promise((ok) => {
      ws.on('message', (d) => ok(JSON.parse(String(d))));
      ws.send(JSON.stringify({ kind: 'call', id: 1, method, params }));
    });
  } finally {
    ws.close();
  }
}

test('first start shows what to do next, and made the scratch disk', async () => {
  await page.getByRole('heading', { name: 'No virtual machines yet' }).waitFor();
  await shots('01-welcome');
  const { existsSync } = await import('node:fs');
  assert.ok(existsSync(join(served.env.XDG_DATA_HOME!, 'spindle', 'scratch.img')), 'scratch.img in the data directory');
});

test('creates a VM with the test guest', async () => {
  await page.getByRole('button', { name: 'New VM' }).first().click();
  const dialog = page.getByRole('dialog', { name: 'New virtual machine' });
  await dialog.getByLabel('Name').fill('e2e guest');
  await dialog.getByLabel('Memory (MiB)').fill('256');
  await dialog.getByLabel('Kernel', { exact: true }).fill(guest.kernel);
  await dialog.getByLabel('Initrd (optional)').fill(guest.initrd);
  await dialog.getByLabel('Kernel command line').fill('console=ttyS0 panic=-1');
  await dialog.getByLabel('Display').selectOption('none');
  await shots('02-create-vm');
  await dialog.getByRole('button', { name: 'Create VM' }).click();
  await page.getByRole('heading', { name: 'e2e guest' }).waitFor();
  assert.equal(await page.getByTestId('vm-state').textContent(), 'stopped');
  await shots('03-vm-overview');
});

test('a bad VM name is refused with a sentence', async () => {
  const r = await apiCall('vm.create', { name: '   ' });
  assert.equal(r.ok, false);
  assert.match(r.error!.message, /A VM needs a name/);
});

test('attaches a loop device, which defaults to native + none', async () => {
  await page.getByRole('tab', { name: 'Disks' }).click();
  await page.getByText('This VM has no disks.').waitFor();
  await page.getByRole('button', { name: 'Add disk…' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Existing image file').check();
  await dialog.getByLabel('Image file', { exact: true }).fill(loop.device);
  // A /dev path shows the host-device defaults before anything is sent.
  assert.equal(await dialog.getByLabel('Aio').inputValue(), 'native');
  assert.equal(await dialog.getByLabel('Cache').inputValue(), 'none');
  await dialog.getByRole('button', { name: 'Attach' }).click();
  await dialog.waitFor({ state: 'detached' });
  const row = page.getByTestId('disk-row').filter({ hasText: loop.device });
  await row.waitFor();
  assert.equal(await row.getByLabel('Aio').inputValue(), 'native');
  assert.equal(await row.getByLabel('Cache').inputValue(), 'none');
  assert.equal(await row.getByTestId('default-badge').textContent(), 'recommended for host devices');
  assert.match((await row.getByLabel('Aio').locator('option[value=native]').textContent())!, /recommended for host devices/);
});

test('attaches a sparse file with threads + writeback and the advisor verdict', async () => {
  await page.getByRole('button', { name: 'Add disk…' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Existing image file').check();
  await dialog.getByLabel('Image file', { exact: true }).fill(sparseFile);
  await dialog.getByRole('button', { name: 'Attach' }).click();
  await dialog.waitFor({ state: 'detached' });
  const row = page.getByTestId('disk-row').filter({ hasText: sparseFile });
  await row.waitFor();
  assert.equal(await row.getByLabel('Aio').inputValue(), 'threads');
  assert.equal(await row.getByLabel('Cache').inputValue(), 'writeback');
  assert.equal(await row.getByTestId('default-badge').textContent(), 'default for image files');
  // The advisor's verdict, or, while this build has no advisor, its refusal as a sentence.
  const advisor = await apiCall('advisor.inspect', { path: sparseFile });
  if (advisor.ok) {
    assert.equal(await row.getByTestId('advisor-badge').textContent(), 'sparse: native may stall; preallocate?');
    await row.getByRole('button', { name: 'Preallocate' }).waitFor();
  } else {
    assert.equal(await row.getByTestId('advisor-error').textContent(), `advisor: ${advisor.error!.message}`);
  }
  await shots('04-disks');
});

test('native with writeback is refused, with the reason, in the UI and by the backend', async () => {
  const row = page.getByTestId('disk-row').filter({ hasText: sparseFile });
  const native = row.getByLabel('Aio').locator('option[value=native]');
  assert.equal(await native.isDisabled(), true);
  const reason = await row.getByTestId('native-reason').textContent();
  assert.match(reason!, /aio 'native' needs cache 'none' or 'directsync': Linux AIO is only asynchronous with O_DIRECT, and cache 'writeback' goes through the host page cache/);
  // Another client asking the backend directly gets the same sentence.
  const vm = (await apiCall('vm.list', {})).result.vms[0];
  const disk = vm.config.disks.find((d: { path: string }) => d.path === sparseFile);
  const r = await apiCall('disk.set', { vmId: vm.config.id, diskId: disk.id, patch: { aio: 'native' } });
  assert.equal(r.ok, false);
  assert.match(r.error!.message, /native' needs cache 'none' or 'directsync'/);
  // Cache unsafe shows its data-loss warning; going back removes it.
  await row.getByLabel('Cache').selectOption('unsafe');
  await row.getByTestId('unsafe-warning').waitFor();
  await shots('05-unsafe-warning');
  await row.getByLabel('Cache').selectOption('writeback');
  await row.getByTestId('unsafe-warning').waitFor({ state: 'detached' });
});

test('starts the VM; the serial console shows the guest', async () => {
  await page.getByRole('button', { name: 'Start', exact: true }).click();
  await page.getByTestId('vm-state').filter({ hasText: 'running' }).waitFor({ timeout: 60_000 });
  await page.getByRole('tab', { name: 'Console' }).click();
  await page.getByTestId('serial-console').getByText(READY).waitFor({ timeout: 120_000 });
  await shots('06-serial-console');
});

test('the live chart reports the disks while the guest writes', async () => {
  // Type into the guest's shell through the console: write 32 MiB to the first virtio disk.
  await page.getByTestId('serial-console').click();
  await page.keyboard.type('dd if=/dev/zero of=/dev/vda bs=1M count=32 oflag=direct; echo DD-DONE\n');
  await page.getByRole('tab', { name: 'Performance' }).click();
  const live = page.getByTestId('disk-live').first();
  await live.getByTestId('disk-now').waitFor({ timeout: 60_000 });
  await page.getByTestId('disk-now').first().waitFor();
  await shots('07-performance');
});

test('the aio comparison refuses a disk of a running VM with the reason, and runs on the scratch disk', async () => {
  await page.getByRole('button', { name: 'Compare aio modes' }).first().click();
  await page.getByRole('heading', { name: 'Compare aio modes' }).waitFor();
  await page.getByLabel('a disk of a stopped VM').check();
  const option = page.getByLabel('VM disk').locator('option', { hasText: loop.device });
  assert.equal(await option.isDisabled(), true);
  await page.getByText(/e2e guest is running: stop it first, the comparison writes to the disk/).first().waitFor();
  await page.getByLabel('the scratch disk').check();
  const bench = await apiCall('bench.start', { target: { kind: 'scratch' }, modes: ['threads'], workloads: [{ op: 'read', recordBytes: 16384 }] });
  if (bench.ok) await apiCall('bench.cancel', { benchId: bench.result.benchId });
  await page.getByRole('button', { name: 'Run comparison' }).click();
  if (bench.ok) {
    await page.getByRole('progressbar').waitFor();
    await page.getByRole('button', { name: 'Cancel' }).click();
  } else {
    // This build has no benchmark runner yet: the refusal reaches the user as the backend's sentence.
    assert.equal(await page.getByTestId('compare-error').textContent(), bench.error!.message);
  }
  await shots('08-compare');
});

test('the page raised no script errors', () => {
  assert.deepEqual(pageErrors.filter((e) => !/Failed to load resource/.test(e)), []);
});
