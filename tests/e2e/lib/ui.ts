// How the e2e tests touch the page: only as a user can. Every action goes through Playwright's
// actionability checks (visible, stable, enabled, receiving events; never `force`), and first
// asserts that the control lies inside the visible width of every scrolling box around it: a
// button that only a sideways scroll reaches fails the step that needs it.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { ARTIFACTS, type Theme } from './serve.js';

// The callbacks given to evaluate() run in the page (Chromium), not in Node: its globals, loosely typed here.
declare const document: any, window: any, requestAnimationFrame: any; // eslint-disable-line @typescript-eslint/no-explicit-any
type Element = any; // eslint-disable-line @typescript-eslint/no-explicit-any
type HTMLDetailsElement = any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Why `el` is not reachable without scrolling sideways, or null. Runs in the page. */
async function sidewaysProblem(locator: Locator): Promise<string | null> {
  return locator.evaluate((el) => {
    const name = (e: Element) =>
      `<${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.classList.length ? `.${[...e.classList].join('.')}` : ''}>`;
    const r = el.getBoundingClientRect();
    for (let a = el.parentElement; a; a = a.parentElement) {
      if (a.scrollWidth <= a.clientWidth + 1) continue;
      const box = a.getBoundingClientRect();
      // Where the control sits when the box is not scrolled sideways.
      const left = r.left + a.scrollLeft - (box.left + a.clientLeft);
      const right = r.right + a.scrollLeft - (box.left + a.clientLeft);
      if (right > a.clientWidth + 1 || left < -1) {
        return `${name(el)} "${(el.textContent ?? '').trim().slice(0, 40)}" lies at ${Math.round(left)}–${Math.round(right)} px inside ${name(a)}, which shows only ${a.clientWidth} px of its ${a.scrollWidth} px width: only a sideways scroll reaches it`;
      }
    }
    if (r.right > window.innerWidth + 1) return `${name(el)} ends at ${Math.round(r.right)} px, beyond the ${window.innerWidth} px window`;
    return null;
  });
}

/** Asserts the control is visible and inside the visible width of every box around it. */
export async function reachable(locator: Locator): Promise<void> {
  await locator.waitFor({ state: 'visible' });
  assert.equal(await sidewaysProblem(locator), null);
}

export async function click(locator: Locator): Promise<void> {
  await reachable(locator);
  await locator.click();
}

export async function check(locator: Locator): Promise<void> {
  await reachable(locator);
  await locator.check();
}

export async function uncheck(locator: Locator): Promise<void> {
  await reachable(locator);
  await locator.uncheck();
}

export async function fill(locator: Locator, value: string): Promise<void> {
  await reachable(locator);
  await locator.fill(value);
}

export async function select(locator: Locator, value: string): Promise<void> {
  await reachable(locator);
  await locator.selectOption(value);
}

/** Opens a <details> disclosure by its summary, if it is closed. */
export async function disclose(scope: Locator, summary: string | RegExp): Promise<void> {
  const s = scope.locator('summary').filter({ hasText: summary }).first();
  const open = await s.evaluate((el) => (el.parentElement as HTMLDetailsElement).open);
  if (!open) await click(s);
}

/** The boxes that must never be wider than they show: the page, dialogs, panels, tab panels, tables. */
export async function horizontalOverflow(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const name = (e: Element) =>
      `<${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.classList.length ? `.${[...e.classList].join('.')}` : ''}>`;
    const boxes = [
      document.documentElement,
      document.body,
      ...document.querySelectorAll('main, nav, header, dialog[open], dialog[open] form, .panel, [role=tabpanel], section, .table-wrap'),
    ];
    return boxes
      .filter((b) => b.scrollWidth > b.clientWidth + 1)
      .map((b) => `${name(b)} is ${b.scrollWidth} px wide inside ${b.clientWidth} px`);
  });
}

export async function assertNoHorizontalOverflow(page: Page, where: string): Promise<void> {
  assert.deepEqual(await horizontalOverflow(page), [], `${where}: a box overflows horizontally`);
}

export const WIDTHS = [1024, 1280, 1440, 1920] as const;
export const THEMES: Theme[] = ['light', 'dark'];
export const heightFor = (width: number) => (width >= 1920 ? 1080 : width >= 1440 ? 900 : 800);

/**
 * At each width and theme: the layout check, then a screenshot tests/artifacts/<name>-<w>x<h>-<theme>.png.
 * `prepare` (optional) runs after each resize, before the check (e.g. to reopen a dialog).
 */
export async function checkLayouts(
  page: Page,
  name: string,
  opts: { widths?: readonly number[]; prepare?: () => Promise<void>; verify?: () => Promise<void> } = {},
): Promise<void> {
  const before = page.viewportSize();
  for (const width of opts.widths ?? WIDTHS) {
    const height = heightFor(width);
    await page.setViewportSize({ width, height });
    for (const theme of THEMES) {
      await page.emulateMedia({ colorScheme: theme });
      await opts.prepare?.();
      // Layout settles on the next frames (charts resize through a ResizeObserver).
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      await assertNoHorizontalOverflow(page, `${name} at ${width} px, ${theme}`);
      await opts.verify?.();
      await page.screenshot({ path: join(ARTIFACTS, `${name}-${width}x${height}-${theme}.png`) });
    }
  }
  if (before) await page.setViewportSize(before);
  await page.emulateMedia({ colorScheme: 'light' });
}

/** Polls `read` until `ok` holds; fails with `what` after the deadline. */
export async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000, page?: Page): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for ${what}; last value: ${JSON.stringify(v)}`);
    await (page ? page.waitForTimeout(150) : new Promise((r) => setTimeout(r, 150)));
  }
}

/**
 * Waits for a comparison's status to read "Done: N runs." A long run on a loaded machine is not a
 * hang, so the deadline is on progress: it fails when the status text has not changed for
 * `stallMs` (saying what it last read), however long the whole run takes (the test's own
 * deadline still bounds it).
 */
export async function comparisonDone(page: Page, runs: number, stallMs = 180_000): Promise<void> {
  const status = page.getByRole('status').filter({ hasText: /runs/ });
  let last = '';
  let changedAt = Date.now();
  for (;;) {
    const text = (
      (await status
        .first()
        .textContent({ timeout: stallMs })
        .catch(() => '')) ?? ''
    )
      .replace(/\s+/g, ' ')
      .trim();
    if (text.startsWith(`Done: ${runs} runs.`)) return;
    // (A "Done" with another count is the previous run's, until this one's progress replaces it.)
    if (/^(Cancelled|Stopped)/.test(text)) throw new Error(`the comparison ended without ${runs} runs: "${text}"`);
    if (text !== last) {
      last = text;
      changedAt = Date.now();
    } else if (Date.now() - changedAt > stallMs) {
      throw new Error(`the comparison made no progress for ${stallMs / 1000} s; the status still reads "${last}"`);
    }
    await page.waitForTimeout(500);
  }
}
