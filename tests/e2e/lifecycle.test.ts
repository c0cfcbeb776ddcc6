// A VM's life as the user sees it (its Lifecycle and Performance tabs): a real
// `spindle serve`, Debian's Chromium, the test guest booting under QEMU and writing with fio to a
// real image file. The guest has no ACPI daemon, so Shut down has to force it off.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { startApp, apiCall as callApi, ARTIFACTS, type App } from './lib/serve.js';
import { click, until, checkLayouts } from './lib/ui.js';
import { tempDir, makeFile } from '../lib/loop.js';
import { guestBoot } from '../guest/vm-guest.js';
import { AGENT_END_PREFIX, AGENT_READY } from '../lib/guest-image.js';

let app: App;
let page: Page;
let pageErrors: string[];
let tmp: ReturnType<typeof tempDir>;
let vmId: string;
let image: string;

before(async () => {
  tmp = tempDir('spindle-e2e-life-');
  image = makeFile(join(tmp.path, 'data.img'), 64 << 20, { written: true });
  const guest = await guestBoot();
  app = await startApp({ width: 1280, height: 800 }, 'light');
  ({ page, errors: pageErrors } = app);
  const r = await callApi(app.served, 'vm.create', {
    name: 'life',
    memoryMiB: 256,
    display: 'none',
    network: { user: false },
    boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: guest.cmdline },
    disks: [{ path: image, aio: 'io_uring', cache: 'none' }],
  });
  assert.ok(r.ok, r.error?.message);
  vmId = r.result.config.id;
});

after(async () => {
  await app?.close();
  tmp?.cleanup();
});

const apiCall = (method: string, params: unknown) => callApi(app.served, method, params);
const state = () => page.getByTestId('vm-state');

async function guestRun(cmd: string, timeoutMs = 120_000): Promise<{ code: number; output: string }> {
  const token = randomBytes(6).toString('hex');
  const sent = await apiCall('console.serialInput', {
    vmId,
    dataBase64: Buffer.from(`${token} ${Buffer.from(cmd).toString('base64')}\n`).toString('base64'),
  });
  assert.ok(sent.ok, JSON.stringify(sent.error));
  const end = new RegExp(`${AGENT_END_PREFIX}${token}_(\\d+)__`);
  return until(
    `the guest command ${cmd}`,
    async () => {
      const backlog = Buffer.from((await apiCall('console.serialBacklog', { id: vmId })).result.dataBase64, 'base64').toString('latin1');
      const m = end.exec(backlog);
      return m ? { code: Number(m[1]), output: backlog.slice(0, m.index) } : null;
    },
    (v) => v !== null,
    timeoutMs,
  ).then((v) => v!);
}

/** The labels uPlot drew on one axis of a chart, with their pixel boxes (TimeChart records them). */
async function axisLabels(chart: Locator, axis: string): Promise<{ text: string; x0: number; x1: number; y0: number; y1: number }[]> {
  const raw = await chart.getAttribute(`data-axis-${axis}`);
  return raw ? JSON.parse(raw) : [];
}

test('starts; the KVM warning shows once', async () => {
  await click(page.getByRole('navigation').getByRole('button', { name: /^life/ }));
  await click(page.getByRole('button', { name: 'Start', exact: true }));
  await state().filter({ hasText: 'running' }).waitFor({ timeout: 60_000 });
  const info = (await apiCall('app.info', {})).result;
  if (info.acceleratorWarning) {
    // The header says it; the VM page does not repeat it.
    const head = info.acceleratorWarning.slice(0, 40);
    assert.equal(await page.getByText(head).count(), 1, 'the accelerator warning appears once');
  }
  await click(page.getByRole('tab', { name: 'Console' }));
  await page.getByTestId('serial-console').getByText(AGENT_READY).waitFor({ timeout: 240_000 });
});

test('Performance: hover shows the crosshair and legend values under a real pointer; axes read sensibly at 1024 px', async () => {
  const started = await guestRun(
    '(/usr/bin/fio --name=w --filename=/dev/vda --size=16M --rw=randwrite --bs=4k --ioengine=libaio --iodepth=4 --direct=1 --time_based --runtime=25 > /tmp/fio.out 2>&1; echo "exit $?" >> /tmp/fio.out) &',
  );
  assert.equal(started.code, 0);
  await click(page.getByRole('tab', { name: 'Performance' }));
  const live = page.getByTestId('disk-live').first();
  await until(
    'write MB/s above zero',
    async () =>
      Number(
        /([\d.]+)/.exec(
          (await live
            .getByTestId('write-mbps')
            .textContent()
            .catch(() => '')) ?? '',
        )?.[1] ?? 0,
      ),
    (v) => v > 0,
    120_000,
    page,
  );
  await page.waitForTimeout(3000); // a few more ticks on the chart
  await page.setViewportSize({ width: 1024, height: 800 });
  const chart = live.getByTestId('chart').nth(1); // IOPS and p99 latency
  await chart.scrollIntoViewIfNeeded();
  await until(
    'the chart drawn at its new width',
    () => axisLabels(chart, 'x'),
    (l) => l.length > 0,
    10_000,
    page,
  );
  // No two time labels overlap.
  for (const axis of ['x', 'iops', 'lat']) {
    const labels = (await axisLabels(chart, axis)).filter((l) => l.text);
    for (let i = 1; i < labels.length; i++) {
      const [a, b] = [labels[i - 1], labels[i]];
      const overlap = axis === 'x' ? a.x1 > b.x0 && b.x1 > a.x0 : a.y1 > b.y0 && b.y1 > a.y0;
      assert.equal(overlap, false, `${axis} labels "${a.text}" and "${b.text}" overlap: ${JSON.stringify(labels)}`);
    }
    // Each tick of a value axis reads differently ("1µs, 1µs, 0µs" says nothing).
    if (axis !== 'x')
      assert.equal(new Set(labels.map((l) => l.text)).size, labels.length, `${axis} ticks: ${labels.map((l) => l.text).join(', ')}`);
  }
  // A real pointer over the plot: the crosshair follows it and the legend shows the values under it.
  // (Measured again on each try: a note appearing above the chart moves it under a resting pointer.)
  const over = chart.locator('.u-over');
  const hover = await until(
    'the crosshair under the pointer and values in the legend',
    async () => {
      const box = await over.boundingBox();
      if (!box) return null;
      const x = box.x + box.width * 0.9;
      await page.mouse.move(x, box.y + box.height / 2);
      const cross = await chart.locator('.u-cursor-x').boundingBox();
      const values = await chart.locator('.u-legend .u-value').allTextContents();
      return { dx: cross ? Math.abs(cross.x - x) : null, values };
    },
    (r) => r !== null && r.dx !== null && r.dx < 3 && r.values.length >= 3 && r.values.some((v) => /\d/.test(v)),
    15_000,
    page,
  );
  assert.ok(hover && hover.values.length >= 4, `legend: ${hover?.values}`);
  await page.screenshot({ path: join(ARTIFACTS, 'life-hover-1024x800-light.png') });
  await page.mouse.move(0, 0);
  await page.setViewportSize({ width: 1280, height: 800 });
});

test('Force off asks first; keeping the VM running changes nothing', async () => {
  await click(page.getByRole('button', { name: 'Force off', exact: true }));
  const confirm = page.getByRole('alertdialog', { name: /Force off/ });
  await confirm.waitFor();
  assert.match((await confirm.textContent())!, /power cord/);
  await click(confirm.getByRole('button', { name: 'Keep running' }));
  await confirm.waitFor({ state: 'detached' });
  await page.waitForTimeout(1000);
  assert.equal((await apiCall('vm.get', { id: vmId })).result.state, 'running');
});

test('Shut down on a guest that ignores ACPI says it had to force it off', async () => {
  await until(
    'fio finished',
    async () => (await guestRun('cat /tmp/fio.out')).output,
    (o) => /exit \d+/.test(o),
    120_000,
  );
  await click(page.getByRole('button', { name: 'Shut down', exact: true }));
  await state().filter({ hasText: 'stopped' }).waitFor({ timeout: 90_000 });
  const note = page.getByTestId('vm-note');
  await note.waitFor();
  assert.match((await note.textContent())!, /did not respond to ACPI shutdown in 30 s; forced off/);
});

test('after stop: the console claims no output it does not have; the performance tab marks its values as stale', async () => {
  await click(page.getByRole('tab', { name: 'Console' }));
  const serial = page.getByTestId('serial-console');
  await serial.waitFor();
  await page.waitForTimeout(1000); // the backlog request answers
  const shown = (await serial.locator('.xterm-rows').textContent())?.trim() ?? '';
  const says = (await page.getByTestId('console-note').textContent())!;
  if (!shown) assert.doesNotMatch(says, /last serial output/, 'an empty console does not claim to show output');
  else assert.match(says, /last serial output/);

  await click(page.getByRole('tab', { name: 'Performance' }));
  const totals = page.getByTestId('vm-totals');
  await totals.waitFor();
  assert.equal(await totals.getByText(/Nothing to show yet/).count(), 0, 'charts with data are not "nothing to show"');
  await totals
    .getByTestId('stale-note')
    .filter({ hasText: /stopped/ })
    .waitFor();
  const disk = page.getByTestId('disk-live').first();
  await disk.getByTestId('stale-note').waitFor();
  assert.match((await disk.getByTestId('stale-note').textContent())!, /last values from \d/);
  await checkLayouts(page, 'life-performance-stopped', { widths: [1024, 1920] });
});

test('Force off, confirmed, stops the VM', async () => {
  await click(page.getByRole('button', { name: 'Start', exact: true }));
  await state().filter({ hasText: 'running' }).waitFor({ timeout: 60_000 });
  await click(page.getByRole('button', { name: 'Force off', exact: true }));
  const confirm = page.getByRole('alertdialog', { name: /Force off/ });
  await click(confirm.getByRole('button', { name: 'Force off' }));
  await state().filter({ hasText: 'stopped' }).waitFor({ timeout: 60_000 });
});

test('the page raised no script errors', () => {
  assert.deepEqual(
    pageErrors.filter((e) => !/Failed to load resource/.test(e)),
    [],
  );
});
