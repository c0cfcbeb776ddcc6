// The aio comparison's guest-like profiles end to end: a real `spindle serve`, Chromium, the
// scratch disk served by real DiskServer IOThreads and driven by loadgen. Ticked, the comparison
// adds 4k random reads, writes and a 70/30 mix with 32 requests in flight, in a table of their own
// beside the 2009 post's, each cell repeated with its spread and the best mode per column marked.
// Screenshots at 1024, 1280, 1440 and 1920 px in both themes, with the layout check.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { startApp, apiCall as callApi, type App } from './lib/serve.js';
import { click, check, uncheck, select, checkLayouts, comparisonDone } from './lib/ui.js';

let app: App;
let page: Page;

before(async () => {
  app = await startApp({ width: 1280, height: 800 }, 'light');
  page = app.page;
});

after(async () => {
  await app?.close();
});

test('guest-like profiles: a table of their own with IOPS, the spread of 3 repeats and the best mode per column', async () => {
  await click(page.getByRole('button', { name: 'Compare aio modes' }).first());
  await page.getByRole('heading', { name: 'Compare aio modes' }).waitFor();
  await check(page.getByLabel('the scratch disk'));
  await uncheck(page.getByRole('checkbox', { name: 'native', exact: true }));
  await uncheck(page.getByRole('checkbox', { name: /^native\+nowait/ }));
  await select(page.getByLabel('Data per run'), '16');
  await select(page.getByLabel('Repeat each cell'), '3');
  await check(page.getByRole('checkbox', { name: /Guest-like profiles too/ }));
  await page
    .getByTestId('compare-method')
    .getByText(/32 requests in flight at random 4k offsets/)
    .waitFor();
  await click(page.getByRole('button', { name: 'Run comparison' }));
  // 3 repeats × 2 modes × (8 post columns + 3 profiles).
  await comparisonDone(page, 66);
  const profiles = page.getByTestId('profiles-table');
  const heads = (await profiles.locator('thead th').allTextContents()).map((t) => t.trim());
  assert.deepEqual(heads, ['mode', 'random read 4k ×32', 'random write 4k ×32', 'mixed 70/30 4k ×32']);
  assert.deepEqual(await profiles.locator('tbody tr th').allTextContents(), ['threads', 'io_uring']);
  for (const cell of await profiles.locator('tbody td').allTextContents())
    assert.match(cell.replace(/\s+/g, '').trim(), /^[\d,]+±\d+%$/, 'each cell: IOPS and the spread of its repeats');
  assert.equal(await profiles.locator('td.best').count(), 3, 'one best mode per column');
  // The post's table keeps only its own sequential columns.
  const post = (await page.getByTestId('compare-table').locator('thead th').allTextContents()).map((t) => t.replace(/\s+/g, ' ').trim());
  assert.ok(!post.some((h) => /random|mixed/.test(h)), `the post's table has no profile columns: ${post.join(', ')}`);
  // Kept by the backend with the rest of the run (newest first).
  const history = (await callApi(app.served, 'bench.history', { target: { kind: 'scratch' } })).result.runs;
  assert.equal(history[0].rows.filter((r: { random?: boolean }) => r.random).length, 18);
  await checkLayouts(page, 'compare-profiles', {
    prepare: async () => profiles.scrollIntoViewIfNeeded(),
    verify: async () => assert.ok(await profiles.isVisible(), 'the profiles table is in view'),
  });
  assert.deepEqual(app.errors, [], 'no script errors in the page');
});
