// The aio comparison end to end: a real `spindle serve`, Debian's Chromium, the scratch disk served
// by real DiskServer IOThreads and driven through vhost-user by loadgen; a real QEMU (no guest
// needed) holds a VM disk so its refusal can be seen. Screenshots go to tests/artifacts/.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { startApp, apiCall as callApi, ARTIFACTS, type App } from './lib/serve.js';
import { tempDir, makeFile } from '../lib/loop.js';
import { click, check, uncheck, select, checkLayouts, comparisonDone } from './lib/ui.js';

let app: App;
let tmp: ReturnType<typeof tempDir>;
let page: Page;
let pageErrors: string[];

before(async () => {
  tmp = tempDir('spindle-e2e-compare-');
  app = await startApp({ width: 1280, height: 800 }, 'light');
  ({ page, errors: pageErrors } = app);
});

after(async () => {
  await app?.close();
  tmp?.cleanup();
});

const apiCall = (method: string, params: unknown) => callApi(app.served, method, params);

test("the comparison on the scratch disk gives a table of four modes with the post's columns", async () => {
  await click(page.getByRole('button', { name: 'Compare aio modes' }).first());
  await page.getByRole('heading', { name: 'Compare aio modes' }).waitFor();
  await check(page.getByLabel('the scratch disk'));
  await select(page.getByLabel('Data per run'), '16');
  await page
    .getByTestId('compare-method')
    .getByText(/one request in\s+flight/)
    .waitFor();
  await click(page.getByRole('button', { name: 'Run comparison' }));
  await page.getByRole('progressbar', { name: 'Comparison progress' }).waitFor();
  const table = page.getByTestId('compare-table');
  await comparisonDone(page, 32);
  const rows = await table.locator('tbody tr th').allTextContents();
  assert.deepEqual(rows, ['threads', 'native', 'native+nowait', 'io_uring']);
  const heads = (await table.locator('thead th').allTextContents()).map((t) => t.replace(/\s+/g, ' ').trim());
  assert.deepEqual(heads, [
    'mode',
    'write 16kKB/s',
    'read 16kKB/s',
    'write 64kKB/s',
    'read 64kKB/s',
    'write 256kKB/s',
    'read 256kKB/s',
    'write 20MMB/s',
    'read 20MMB/s',
    'backend CPU',
    'nowait fallbacks',
  ]);
  // Every measured cell of every row a positive number ('—' would be a missing measurement), the
  // backend CPU positive, and nowait fallbacks a count on the nowait row only.
  for (const [i, mode] of rows.entries()) {
    const cells = (await table.locator('tbody tr').nth(i).locator('td').allTextContents()).map((t) => t.trim());
    assert.equal(cells.length, 10, `${mode}: ${cells}`);
    for (const [j, cell] of cells.slice(0, 8).entries())
      assert.ok(/^[\d,]+$/.test(cell) && Number(cell.replace(/,/g, '')) > 0, `${mode}, ${heads[j + 1]}: ${JSON.stringify(cell)}`);
    assert.ok(/^\d+\.\d\d s$/.test(cells[8]!) && parseFloat(cells[8]!) > 0, `${mode}, backend CPU: ${JSON.stringify(cells[8])}`);
    assert.match(cells[9]!, mode === 'native+nowait' ? /^\d+$/ : /^—$/, `${mode}, nowait fallbacks`);
  }
  await page
    .getByTestId('compare-settings')
    .getByText(/O_DIRECT, 1 request in\s+flight, 16 MiB per run/)
    .waitFor();
  // The CSV has the 32 runs.
  const [download] = await Promise.all([page.waitForEvent('download'), click(page.getByRole('link', { name: 'Export CSV' }))]);
  const csv = readFileSync((await download.path())!, 'utf8')
    .trim()
    .split('\n');
  assert.equal(csv.length, 33);
  assert.ok(csv.some((l) => l.startsWith('native+nowait,write,16384,')));
  // Each row says what was measured, how and where: disk, cache mode, size, date and kernel.
  const head = csv[0].split(',');
  for (const col of ['disk', 'cache', 'size_bytes', 'date', 'kernel']) assert.ok(head.includes(col), `CSV column ${col}: ${csv[0]}`);
  const first = Object.fromEntries(head.map((h, i) => [h, csv[1].split(',')[i]]));
  assert.equal(first.disk, join(app.served.env.XDG_DATA_HOME!, 'spindle', 'scratch.img'));
  assert.equal(first.cache, 'none');
  assert.ok(Number(first.size_bytes) > 0, first.size_bytes);
  assert.ok(!Number.isNaN(Date.parse(first.date)), first.date);
  assert.equal(first.kernel, release());
  await checkLayouts(page, 'compare-results', { prepare: () => table.scrollIntoViewIfNeeded() });
  // The main pane scrolls on its own: bring the results into view before each shot.
  await table.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(ARTIFACTS, 'compare-scratch-1280x800.png') });
  await table.locator('..').screenshot({ path: join(ARTIFACTS, 'compare-scratch-results.png') });
  await page.setViewportSize({ width: 1920, height: 1080 });
  await page.emulateMedia({ colorScheme: 'dark' });
  await table.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(ARTIFACTS, 'compare-scratch-1920x1080-dark.png') });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.emulateMedia({ colorScheme: 'light' });
});

test('completed runs survive a page reload (kept per disk through the API)', async () => {
  const saved = readdirSync(join(app.served.env.XDG_DATA_HOME!, 'spindle', 'compare'));
  assert.equal(saved.length, 1, `one file per disk: ${saved}`);
  await page.reload();
  await page.getByRole('status').filter({ hasText: 'Connected' }).waitFor();
  await page.getByRole('heading', { name: 'Compare aio modes' }).waitFor();
  await check(page.getByLabel('the scratch disk'));
  const table = page.getByTestId('compare-table');
  await table.waitFor();
  assert.deepEqual(await table.locator('tbody tr th').allTextContents(), ['threads', 'native', 'native+nowait', 'io_uring']);
  await page
    .getByTestId('compare-saved')
    .filter({ hasText: /Measured .*\d/ })
    .waitFor();
});

test('a run can be cancelled from the panel', async () => {
  await select(page.getByLabel('Data per run'), '256');
  await click(page.getByRole('button', { name: 'Run comparison' }));
  await click(page.getByRole('button', { name: 'Cancel' }));
  await page
    .getByRole('status')
    .getByText(/^Cancelled after \d+ of 32 runs\./)
    .waitFor({ timeout: 60_000 });
  await page.getByRole('button', { name: 'Run comparison' }).waitFor();
});

test("before writing to a stopped VM's disk it asks first and says the disk will be restored", async () => {
  const img = makeFile(join(tmp.path, 'stopped.img'), 64 << 20, { written: true });
  const vm = await apiCall('vm.create', {
    name: 'quiet box',
    memoryMiB: 64,
    display: 'none',
    network: { user: false },
    disks: [{ path: img }],
  });
  assert.ok(vm.ok, vm.error?.message);
  await check(page.getByLabel('a disk of a stopped VM'));
  await select(page.getByLabel('VM disk'), `${vm.result.config.id}/d0`);
  await click(page.getByRole('button', { name: 'Run comparison' }));
  const ask = page.getByRole('alertdialog', { name: /Write to/ });
  await ask.waitFor();
  assert.match((await ask.textContent())!, /restored/);
  await click(ask.getByRole('button', { name: "Don't run" }));
  await ask.waitFor({ state: 'detached' });
  assert.equal(await page.getByRole('progressbar', { name: 'Comparison progress' }).count(), 0, 'nothing ran');
  await click(page.getByRole('button', { name: 'Run comparison' }));
  await click(page.getByRole('alertdialog', { name: /Write to/ }).getByRole('button', { name: 'Run and restore' }));
  await page.getByRole('progressbar', { name: 'Comparison progress' }).waitFor();
  await click(page.getByRole('button', { name: 'Cancel' }));
  await page
    .getByRole('status')
    .getByText(/^Cancelled after \d+ of \d+ runs\./)
    .waitFor({ timeout: 60_000 });
  // The written pattern is back.
  const head = readFileSync(img).subarray(0, 1 << 20);
  assert.ok(
    head.every((b) => b === 0xa5),
    'the disk was restored',
  );
});

test("a repeated comparison shows each cell's spread, marks the best mode per column, and one button applies it to the disk", async () => {
  const vm = (await apiCall('vm.list', {})).result.vms.find((v: { config: { name: string } }) => v.config.name === 'quiet box');
  await check(page.getByLabel('a disk of a stopped VM'));
  await select(page.getByLabel('VM disk'), `${vm.config.id}/d0`);
  await uncheck(page.getByRole('checkbox', { name: 'native', exact: true }));
  await uncheck(page.getByRole('checkbox', { name: /^native\+nowait/ }));
  await select(page.getByLabel('Data per run'), '16');
  await select(page.getByLabel('Repeat each cell'), '3');
  await click(page.getByRole('button', { name: 'Run comparison' }));
  await click(page.getByRole('alertdialog', { name: /Write to/ }).getByRole('button', { name: 'Run and restore' }));
  await comparisonDone(page, 48);
  const table = page.getByTestId('compare-table');
  assert.deepEqual(await table.locator('tbody tr th').allTextContents(), ['threads', 'io_uring']);
  assert.ok((await table.locator('.spread').count()) >= 16, 'every cell shows the spread of its 3 repeats');
  assert.equal(await table.locator('td.best').count(), 8, 'one best mode per column');
  const use = page.getByRole('button', { name: /^Use (threads|io_uring) \+ none on d0$/ });
  const chosen = /^Use (\S+) /.exec((await use.textContent())!)![1];
  await click(use);
  await page
    .getByRole('status')
    .filter({ hasText: `Disk d0 now uses ${chosen} + none.` })
    .waitFor();
  const disk = (await apiCall('vm.get', { id: vm.config.id })).result.config.disks[0];
  assert.deepEqual([disk.aio, disk.cache], [chosen, 'none']);
  await table.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(ARTIFACTS, 'compare-repeats-1280x800.png') });
  // The disk's page now offers the measured preset, and it is the one in use.
  await page.goto(`${app.served.url}#/vm/${vm.config.id}/disks`);
  const row = page.getByTestId('disk-row');
  const fastest = row.getByRole('radio', { name: /Fastest on this disk \(measured\)/ });
  await row
    .getByTestId('preset-fastest')
    .filter({ hasText: new RegExp(`^${chosen} \\+ none was fastest when you measured this disk on`) })
    .waitFor();
  assert.equal(await fastest.isChecked(), true);
  await page.screenshot({ path: join(ARTIFACTS, 'compare-measured-preset-1280x800.png') });
  await page.goBack();
  await page.getByRole('heading', { name: 'Compare aio modes' }).waitFor();
});

test("a running VM's disk is refused, in the panel and through the API, with the reason", async () => {
  const img = makeFile(join(tmp.path, 'vm.img'), 64 << 20);
  const vm = await apiCall('vm.create', {
    name: 'busy box',
    memoryMiB: 64,
    display: 'none',
    network: { user: false },
    disks: [{ path: img }],
  });
  assert.ok(vm.ok, vm.error?.message);
  const started = await apiCall('vm.start', { id: vm.result.config.id });
  assert.ok(started.ok, started.error?.message);
  try {
    await check(page.getByLabel('a disk of a stopped VM'));
    const option = page.getByLabel('VM disk').locator('option', { hasText: img });
    assert.equal(await option.isDisabled(), true);
    await page
      .getByText(/busy box is running: stop it first, the comparison writes to the disk/)
      .first()
      .waitFor();
    const refused = await apiCall('bench.start', { target: { kind: 'vmDisk', vmId: vm.result.config.id, diskId: 'd0' } });
    assert.equal(refused.ok, false);
    assert.equal(refused.error!.code, 'DEVICE_BUSY');
    assert.match(refused.error!.message, /'busy box' is in use: the VM is running/);
    await page.screenshot({ path: join(ARTIFACTS, 'compare-refused-1280x800.png') });
  } finally {
    await apiCall('vm.forceOff', { id: vm.result.config.id });
  }
});

test('the page raised no script errors', () => {
  assert.deepEqual(
    pageErrors.filter((e) => !/Failed to load resource/.test(e)),
    [],
  );
});
