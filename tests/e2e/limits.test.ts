// Per-disk I/O limits and the disk's evidence in the UI, end to end: a real `spindle serve`, a real
// guest (one TCG boot) running fio on two real files, Chromium clicking only visible controls.
// - the limits are edited in the disk row (a refusal is a sentence), drawn as a line on the disk's
//   IOPS chart, hold on the running VM, and change live from the same row;
// - the stall timeline of a sparse image under native + nowait offers Preallocate and a mode
//   change right there, and Preallocate fills the file;
// - a live mode switch stays marked on the disk's charts after the page reloads.
// Screenshots at 1024, 1280, 1440 and 1920 px in both themes, with the layout check.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { startApp, apiCall as callApi, type App } from './lib/serve.js';
import { tempDir, makeFile } from '../lib/loop.js';
import { guestBoot } from '../guest/vm-guest.js';
import { AGENT_END_PREFIX, AGENT_READY } from '../lib/guest-image.js';
import { click, fill, disclose, checkLayouts, until } from './lib/ui.js';

let app: App;
let tmp: ReturnType<typeof tempDir>;
let page: Page;
let vmId: string;
let sparse: string;
let written: string;

const apiCall = (method: string, params: unknown) => callApi(app.served, method, params);

before(async () => {
  tmp = tempDir('spindle-e2e-limits-', '/var/tmp');
  sparse = makeFile(join(tmp.path, 'sparse.img'), 128 << 20);
  written = makeFile(join(tmp.path, 'written.img'), 64 << 20, { written: true });
  const boot = await guestBoot();
  app = await startApp({ width: 1280, height: 800 }, 'light');
  page = app.page;
  const r = await apiCall('vm.create', {
    name: 'limits guest',
    memoryMiB: 256,
    display: 'none',
    network: { user: false },
    boot,
    // d0: a sparse image under native + none + nowait (its writes into holes bounce); d1: a written image.
    disks: [{ path: sparse, aio: 'native', cache: 'none', nowait: 'on' }, { path: written }],
  });
  assert.ok(r.ok, JSON.stringify(r.error));
  vmId = r.result.config.id;
});

after(async () => {
  await app?.close();
  tmp?.cleanup();
});

/** Runs a command through the guest's agent over the API's serial console. */
async function guestRun(cmd: string, timeoutMs = 120_000): Promise<{ code: number; output: string }> {
  const token = randomBytes(6).toString('hex');
  const line = `${token} ${Buffer.from(cmd).toString('base64')}\n`;
  const sent = await apiCall('console.serialInput', { vmId, dataBase64: Buffer.from(line).toString('base64') });
  assert.ok(sent.ok, JSON.stringify(sent.error));
  const end = new RegExp(`${AGENT_END_PREFIX}${token}_(\\d+)__`);
  return until(
    `the guest to finish: ${cmd}`,
    async () => {
      const text = Buffer.from((await apiCall('console.serialBacklog', { id: vmId })).result.dataBase64, 'base64').toString('latin1');
      const m = text.match(end);
      return m ? { code: Number(m[1]), output: text } : null;
    },
    (v) => v !== null,
    timeoutMs,
  ) as Promise<{ code: number; output: string }>;
}

const diskRow = (id: string) => page.locator(`[data-testid=disk-row][data-disk-id=${id}]`);
const diskLive = (id: string) => page.locator(`[data-testid=disk-live][data-key$="${id}"]`);
interface DrawnLimit {
  label: string;
  value: number;
  inside: boolean;
}
async function drawnLimits(id: string, title: RegExp): Promise<DrawnLimit[]> {
  const chart = diskLive(id).getByTestId('chart').filter({ hasText: title });
  return JSON.parse((await chart.getAttribute('data-limits')) ?? '[]') as DrawnLimit[];
}

test('limits are edited in the disk row: a wrong set is refused with a sentence, a right one is kept', async () => {
  await click(page.getByRole('button', { name: 'limits guest stopped' }));
  await click(page.getByRole('tab', { name: 'Disks' }));
  const row = diskRow('d1');
  await disclose(row, 'I/O limits');
  assert.equal(await row.getByTestId('limits-summary').textContent(), 'none');
  // A burst without its average is what QEMU refuses too.
  await fill(row.getByLabel('Write IOPS burst'), '400');
  await click(row.getByRole('button', { name: 'Apply limits' }));
  await row.getByTestId('limits-error').filter({ hasText: 'iops-write-max needs iops-write' }).waitFor();
  await fill(row.getByLabel('Write IOPS burst'), '');
  await fill(row.getByLabel('Write IOPS', { exact: true }), '50');
  await click(row.getByRole('button', { name: 'Apply limits' }));
  await row.getByTestId('limits-summary').filter({ hasText: 'iops-write=50' }).waitFor();
  const vm = (await apiCall('vm.get', { id: vmId })).result;
  assert.deepEqual(vm.config.disks[1].limits, { iopsWrite: 50 }, 'the limit is in the VM config');
  await checkLayouts(page, 'limits-01-disk-row', {
    prepare: async () => row.getByRole('button', { name: 'Apply limits' }).scrollIntoViewIfNeeded(),
    verify: async () => assert.ok(await row.getByRole('button', { name: 'Apply limits' }).isVisible(), 'Apply limits is visible'),
  });
});

test("the limit is a line on the disk's IOPS chart and holds on the running VM; a live change moves it", async () => {
  await click(page.getByRole('button', { name: 'Start limits guest' }));
  await until(
    'the guest agent',
    async () => Buffer.from((await apiCall('console.serialBacklog', { id: vmId })).result.dataBase64, 'base64').toString('latin1'),
    (t) => t.includes(AGENT_READY),
    300_000,
  );
  // Writes on both disks in the background: d1 (vdb) under its limit, d0 (vda) into the sparse file's holes.
  const started = await guestRun(
    `(/usr/bin/fio --name=l --filename=/dev/vdb --size=32M --rw=randwrite --bs=4k --ioengine=libaio --iodepth=16 --direct=1 --time_based --runtime=240 > /dev/null 2>&1 &) ; ` +
      `(/usr/bin/fio --name=s --filename=/dev/vda --size=120M --rw=randwrite --bs=64k --ioengine=libaio --iodepth=8 --direct=1 --time_based --runtime=240 > /dev/null 2>&1 &)`,
  );
  assert.equal(started.code, 0);
  await click(page.getByRole('tab', { name: 'Performance' }));
  const lines = await until(
    'the write limit line on d1 IOPS chart',
    () => drawnLimits('d1', /IOPS/),
    (l) => l.some((x) => x.label === 'write limit 50 IOPS' && x.inside),
  );
  assert.equal(lines.length, 1, JSON.stringify(lines));
  // Five seconds of samples under the limit (the sampler's own ticks, 500 ms apart).
  const since = Date.now();
  const ticks = await until(
    '10 ticks with d1 writing',
    async () =>
      (await apiCall('stats.history', { sinceMs: since })).result.ticks as {
        disks: { vmId: string; diskId: string; writeIops: number }[];
      }[],
    (t) => t.filter((x) => x.disks.some((d) => d.vmId === vmId && d.diskId === 'd1' && d.writeIops > 0)).length >= 10,
    60_000,
  );
  const d1 = ticks.flatMap((t) => t.disks.filter((d) => d.vmId === vmId && d.diskId === 'd1'));
  const mean = d1.reduce((a, d) => a + d.writeIops, 0) / d1.length;
  assert.ok(mean <= 50 * 1.3, `d1 wrote at ${mean.toFixed(1)} IOPS on average under a 50 IOPS limit`);
  const iopsChart = diskLive('d1').getByTestId('chart').filter({ hasText: /IOPS/ });
  await checkLayouts(page, 'limits-02-chart-line', { prepare: async () => iopsChart.scrollIntoViewIfNeeded() });

  // Live, from the disk row: 150 IOPS; the line follows.
  await click(page.getByRole('tab', { name: 'Disks' }));
  const row = diskRow('d1');
  await disclose(row, 'I/O limits');
  await fill(row.getByLabel('Write IOPS', { exact: true }), '150');
  await click(row.getByRole('button', { name: 'Apply limits' }));
  await row.getByTestId('limits-summary').filter({ hasText: 'iops-write=150' }).waitFor();
  await click(page.getByRole('tab', { name: 'Performance' }));
  await until(
    'the line at the new limit',
    () => drawnLimits('d1', /IOPS/),
    (l) => l.length === 1 && l[0]!.label === 'write limit 150 IOPS' && l[0]!.inside,
  );
});

test("the sparse image's stall timeline offers Preallocate and a mode change in view, and Preallocate fills it", async () => {
  const live = diskLive('d0');
  const timeline = live.getByTestId('stall-timeline');
  await timeline.waitFor({ timeout: 120_000 });
  const offers = live.getByTestId('stall-offers');
  // The mode change that answers what was seen: submissions that stalled, or nowait bounces.
  await offers.getByRole('button', { name: /^(Use threads \+ none|Turn nowait off)/ }).waitFor();
  await checkLayouts(page, 'limits-03-stall-offers', {
    prepare: async () => timeline.scrollIntoViewIfNeeded(),
    verify: async () => assert.ok(await offers.getByRole('button', { name: 'Preallocate the image file' }).isVisible()),
  });
  assert.equal((await apiCall('advisor.inspect', { path: sparse })).result.sparse, true, 'the image is sparse before');
  await click(offers.getByRole('button', { name: 'Preallocate the image file' }));
  await live.getByTestId('preallocated').filter({ hasText: 'now fully allocated' }).waitFor({ timeout: 60_000 });
  assert.equal((await apiCall('advisor.inspect', { path: sparse })).result.sparse, false, 'the image is fully allocated after');
});

test('a live mode switch stays marked on the disk charts after the page reloads', async () => {
  const switched = await apiCall('disk.set', { vmId, diskId: 'd1', patch: { aio: 'io_uring' } });
  assert.ok(switched.ok, JSON.stringify(switched.error));
  const markers = async () => Promise.all((await diskLive('d1').getByTestId('chart').all()).map((c) => c.getAttribute('data-markers')));
  await until('the switch marked on both charts', markers, (m) => m.length === 2 && m.every((x) => x === '1'));
  await page.reload();
  await diskLive('d1').waitFor();
  await until('the switch still marked after a reload', markers, (m) => m.length === 2 && m.every((x) => x === '1'));
  await diskLive('d1').getByTestId('switch-delta').filter({ hasText: 'Since io_uring' }).waitFor();
  await checkLayouts(page, 'limits-04-switch-after-reload', {
    prepare: async () => diskLive('d1').getByTestId('switch-delta').scrollIntoViewIfNeeded(),
  });
  assert.deepEqual(app.errors, [], 'no script errors in the page');
});
