// The desktop app end to end: a real `spindle serve` (real backend: VM manager, QEMU, the disk
// host), Debian's Chromium driving the built renderer, a real loop device and a real sparse file.
// Screenshots go to tests/artifacts/ (1280×800 and 1920×1080, light and dark).
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { startApp, apiCall as callApi, ARTIFACTS, type App, type Theme } from './lib/serve.js';
import { tempDir, makeFile, attachLoop, type LoopDevice } from '../lib/loop.js';
import { randomBytes } from 'node:crypto';
import { guestBoot } from '../guest/vm-guest.js';
import { AGENT_END_PREFIX, AGENT_READY } from '../lib/guest-image.js';
import { click, check, fill, select, disclose } from './lib/ui.js';
import { waitFor } from '../lib/wait.js';

const SIZES = [
  { width: 1280, height: 800 },
  { width: 1920, height: 1080 },
];
const THEMES: Theme[] = ['light', 'dark'];

let app: App;
let tmp: ReturnType<typeof tempDir>;
let loop: LoopDevice;
let sparseFile: string;
let guest: Awaited<ReturnType<typeof guestBoot>>;
let page: Page;
let pageErrors: string[];

before(async () => {
  tmp = tempDir('spindle-e2e-disks-');
  loop = attachLoop(makeFile(join(tmp.path, 'loop-backing.img'), 64 << 20, { written: true }));
  sparseFile = makeFile(join(tmp.path, 'sparse.img'), 256 << 20);
  guest = await guestBoot();
  app = await startApp(SIZES[0], 'light');
  ({ page, errors: pageErrors } = app);
});

after(async () => {
  await app?.close(); // shuts down VMs and drains disks before the loop device goes
  loop?.detach();
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

const apiCall = (method: string, params: unknown) => callApi(app.served, method, params);

test('first start shows what to do next, and made the scratch disk', async () => {
  await page.getByRole('heading', { name: 'No virtual machines yet' }).waitFor();
  await shots('01-welcome');
  const { existsSync } = await import('node:fs');
  assert.ok(existsSync(join(app.served.env.XDG_DATA_HOME!, 'spindle', 'scratch.img')), 'scratch.img in the data directory');
});

test('creates a VM with the test guest', async () => {
  await click(page.getByRole('button', { name: 'New VM' }).first());
  const dialog = page.getByRole('dialog', { name: 'New virtual machine' });
  await fill(dialog.getByLabel('Name'), 'e2e guest');
  await fill(dialog.getByLabel('Memory (MiB)'), '256');
  await fill(dialog.getByLabel('Kernel', { exact: true }), guest.kernel);
  await fill(dialog.getByLabel('Initrd (optional)'), guest.initrd);
  await fill(dialog.getByLabel('Kernel command line'), guest.cmdline);
  await select(dialog.getByLabel('Display'), 'none');
  await shots('02-create-vm');
  await click(dialog.getByRole('button', { name: 'Create VM' }));
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
  await click(page.getByRole('tab', { name: 'Disks' }));
  await page.getByText('This VM has no disks.').waitFor();
  await click(page.getByRole('button', { name: 'Add disk…' }));
  const dialog = page.getByRole('dialog');
  await check(dialog.getByLabel('Existing image file'));
  await fill(dialog.getByLabel('Image file', { exact: true }), loop.device);
  // A /dev path shows the host-device defaults before anything is sent.
  assert.equal(await dialog.getByLabel('Aio').inputValue(), 'native');
  assert.equal(await dialog.getByLabel('Cache').inputValue(), 'none');
  await click(dialog.getByRole('button', { name: 'Attach' }));
  await dialog.waitFor({ state: 'detached' });
  const row = page.getByTestId('disk-row').filter({ hasText: loop.device });
  await row.waitFor();
  assert.equal(await row.getByLabel('Aio').inputValue(), 'native');
  assert.equal(await row.getByLabel('Cache').inputValue(), 'none');
  assert.equal(await row.getByTestId('default-badge').textContent(), 'recommended for host devices');
  assert.match((await row.getByLabel('Aio').locator('option[value=native]').textContent())!, /recommended for host devices/);
});

test('attaches a sparse file with threads + writeback and the advisor verdict', async () => {
  await click(page.getByRole('button', { name: 'Add disk…' }));
  const dialog = page.getByRole('dialog');
  await check(dialog.getByLabel('Existing image file'));
  await fill(dialog.getByLabel('Image file', { exact: true }), sparseFile);
  await click(dialog.getByRole('button', { name: 'Attach' }));
  await dialog.waitFor({ state: 'detached' });
  const row = page.getByTestId('disk-row').filter({ hasText: sparseFile });
  await row.waitFor();
  assert.equal(await row.getByLabel('Aio').inputValue(), 'threads');
  assert.equal(await row.getByLabel('Cache').inputValue(), 'writeback');
  assert.equal(await row.getByTestId('default-badge').textContent(), 'default for image files');
  // The advisor's verdict (an error from it is a failure, not an alternative).
  const advisor = await apiCall('advisor.inspect', { path: sparseFile });
  assert.ok(advisor.ok, `advisor.inspect: ${JSON.stringify(advisor.error)}`);
  await row.getByTestId('advisor-badge').filter({ hasText: 'sparse: native may stall' }).waitFor();
  assert.equal(await row.getByTestId('advisor-error').count(), 0, 'no advisor error shown');
  await row.getByRole('button', { name: 'Preallocate' }).waitFor();
  await shots('04-disks');
});

test('native with writeback is refused, with the reason, in the UI and by the backend', async () => {
  const row = page.getByTestId('disk-row').filter({ hasText: sparseFile });
  const native = row.getByLabel('Aio').locator('option[value=native]');
  assert.equal(await native.isDisabled(), true);
  const reason = await row.getByTestId('native-reason').textContent();
  assert.match(
    reason!,
    /aio 'native' needs cache 'none' or 'directsync': Linux AIO is only asynchronous with O_DIRECT, and cache 'writeback' goes through the host page cache/,
  );
  // Another client asking the backend directly gets the same sentence.
  const vm = (await apiCall('vm.list', {})).result.vms[0];
  const disk = vm.config.disks.find((d: { path: string }) => d.path === sparseFile);
  const r = await apiCall('disk.set', { vmId: vm.config.id, diskId: disk.id, patch: { aio: 'native' } });
  assert.equal(r.ok, false);
  assert.match(r.error!.message, /native' needs cache 'none' or 'directsync'/);
  // Cache unsafe shows its data-loss warning; going back removes it.
  await disclose(row, 'Details');
  await select(row.getByLabel('Cache'), 'unsafe');
  await row.getByTestId('unsafe-warning').waitFor();
  await shots('05-unsafe-warning');
  await select(row.getByLabel('Cache'), 'writeback');
  await row.getByTestId('unsafe-warning').waitFor({ state: 'detached' });
});

test('starts the VM; the serial console shows the guest', async () => {
  await click(page.getByRole('button', { name: 'Start', exact: true }));
  await page.getByTestId('vm-state').filter({ hasText: 'running' }).waitFor({ timeout: 60_000 });
  await click(page.getByRole('tab', { name: 'Console' }));
  await page.getByTestId('serial-console').getByText(AGENT_READY).waitFor({ timeout: 120_000 });
  await shots('06-serial-console');
});

/** Runs a command through the guest's agent over the API's serial console (console.serialInput / serialBacklog). */
async function guestRun(vmId: string, cmd: string, timeoutMs = 120_000): Promise<{ code: number; output: string }> {
  const token = randomBytes(6).toString('hex');
  const line = `${token} ${Buffer.from(cmd).toString('base64')}\n`;
  const sent = await apiCall('console.serialInput', { vmId, dataBase64: Buffer.from(line).toString('base64') });
  assert.ok(sent.ok, JSON.stringify(sent.error));
  const end = new RegExp(`${AGENT_END_PREFIX}${token}_(\\d+)__`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const backlog = Buffer.from((await apiCall('console.serialBacklog', { id: vmId })).result.dataBase64, 'base64').toString('latin1');
    const m = end.exec(backlog);
    if (m) return { code: Number(m[1]), output: backlog.slice(0, m.index) };
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for the guest command to finish: ${cmd}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const mbOf = (text: string | null): number => Number(/([\d.]+)/.exec(text ?? '')?.[1] ?? 0);

test('the live chart rises while the guest writes, and aio switches live from the UI with no error', async () => {
  const vm = (await apiCall('vm.list', {})).result.vms[0];
  const loopDisk = vm.config.disks.find((d: { path: string }) => d.path === loop.device);
  // fio in the guest writes and verifies the loop device (the first virtio disk) in the background.
  const started = await guestRun(
    vm.config.id,
    `(/usr/bin/fio --name=w --filename=/dev/vda --size=32M --rw=randwrite --bs=64k --ioengine=libaio --iodepth=8 --direct=1 ` +
      `--verify=crc32c --do_verify=1 --verify_fatal=1 --loops=4 > /tmp/fio.out 2>&1; echo "exit $?" >> /tmp/fio.out) &`,
  );
  assert.equal(started.code, 0);
  await click(page.getByRole('tab', { name: 'Performance' }));
  const live = page.locator(`[data-testid=disk-live][data-key$="${loopDisk.id}"]`);
  // The sample values rise above zero (read from the page, as the user sees them).
  await waitFor(
    async () =>
      mbOf(
        await live
          .getByTestId('write-mbps')
          .textContent({ timeout: 5_000 })
          .catch(() => null),
      ) > 0,
    {
      timeoutMs: 120_000,
      intervalMs: 250,
      what: 'the write MB/s of the loop device to rise above zero',
    },
  );
  await shots('07-performance');

  // Switch aio live on the running VM's loop device while fio runs.
  await click(page.getByRole('tab', { name: 'Disks' }));
  const row = page.getByTestId('disk-row').filter({ hasText: loop.device });
  await disclose(row, 'Details');
  await select(row.getByLabel('Aio'), 'io_uring');
  // The change is applied once the selector is enabled again (it is busy while the disk drains and reopens).
  const aio = row.getByLabel('Aio');
  await waitFor(async () => (await aio.inputValue()) === 'io_uring' && !(await aio.isDisabled()), {
    timeoutMs: 120_000,
    intervalMs: 100,
    what: 'the Aio selector to show io_uring and be enabled again (the live switch applied)',
  });
  assert.equal(await row.getByTestId('mode-error').count(), 0, 'no error shown for the live switch');
  const after = (await apiCall('vm.get', { id: vm.config.id })).result;
  assert.equal(after.config.disks.find((d: { id: string }) => d.id === loopDisk.id).aio, 'io_uring');
  assert.equal(after.disks.find((d: { id: string }) => d.id === loopDisk.id).state, 'serving');
  await shots('08-live-switch');
  // fio finishes its verified passes across the switch with no error.
  let out = '';
  await waitFor(async () => /exit \d+/.test((out = (await guestRun(vm.config.id, 'cat /tmp/fio.out')).output)), {
    timeoutMs: 300_000,
    intervalMs: 1000,
    what: 'fio in the guest to finish',
    detail: () => out,
  });
  assert.match(out, /exit 0/, out);
  assert.match(out, /err= 0/, out);
});

test("the live switch is marked on the disk's charts, compared before and after, and reverts in one click", async () => {
  const vm = (await apiCall('vm.list', {})).result.vms[0];
  const loopDisk = vm.config.disks.find((d: { path: string }) => d.path === loop.device);
  await click(page.getByRole('tab', { name: 'Performance' }));
  const live = page.locator(`[data-testid=disk-live][data-key$="${loopDisk.id}"]`);
  for (const chart of await live.getByTestId('chart').all())
    assert.equal(await chart.getAttribute('data-markers'), '1', 'the switch is marked on every chart of the disk');
  const delta = live.getByTestId('switch-delta');
  // fio wrote on both sides of the switch: the change is stated in numbers.
  await delta.filter({ hasText: /Since io_uring \+ none .*write [+−±]\d+%.*over \d+ s before and after/ }).waitFor({ timeout: 30_000 });
  await shots('08b-switch-delta');
  await click(delta.getByRole('button', { name: /Revert to native \+ none/ }));
  await waitFor(
    async () =>
      (await apiCall('vm.get', { id: vm.config.id })).result.config.disks.find((d: { id: string }) => d.id === loopDisk.id).aio ===
      'native',
    { timeoutMs: 60_000, intervalMs: 200, what: 'Revert to put aio native back' },
  );
  await delta.filter({ hasText: /Since native \+ none/ }).waitFor();
});

test('the aio comparison refuses a disk of a running VM with the reason, and runs on the scratch disk', async () => {
  await click(page.getByRole('button', { name: 'Compare aio modes' }).first());
  await page.getByRole('heading', { name: 'Compare aio modes' }).waitFor();
  await check(page.getByLabel('a disk of a stopped VM'));
  const option = page.getByLabel('VM disk').locator('option', { hasText: loop.device });
  assert.equal(await option.isDisabled(), true);
  await page
    .getByText(/e2e guest is running: stop it first, the comparison writes to the disk/)
    .first()
    .waitFor();
  await check(page.getByLabel('the scratch disk'));
  // The run starts from the UI (a refusal is a failure) and cancels from it.
  await click(page.getByRole('button', { name: 'Run comparison' }));
  await page.getByRole('progressbar').waitFor({ timeout: 60_000 });
  assert.equal(await page.getByTestId('compare-error').count(), 0, 'no comparison error shown');
  await click(page.getByRole('button', { name: 'Cancel' }));
  await page.getByText(/Cancelled after \d+ of \d+ runs/).waitFor({ timeout: 60_000 });
  await shots('09-compare');
});

test('the page raised no script errors', () => {
  assert.deepEqual(
    pageErrors.filter((e) => !/Failed to load resource/.test(e)),
    [],
  );
});
