// Starts a real `spindle serve` (the built CLI, a real backend) with private XDG directories, and
// a real Debian Chromium driven by playwright-core.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { WebSocket } from 'ws';

export const REPO = fileURLToPath(new URL('../../../../', import.meta.url));
export const ARTIFACTS = join(REPO, 'tests', 'artifacts');

export interface Served {
  url: string;
  port: number;
  token: string;
  dir: string;
  env: NodeJS.ProcessEnv;
  proc: ChildProcess;
  output: () => string;
  stop(): Promise<void>;
}

export async function startServe(extraArgs: string[] = []): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-e2e-'));
  const env = {
    ...process.env,
    XDG_CONFIG_HOME: join(dir, 'config'),
    XDG_DATA_HOME: join(dir, 'data'),
    XDG_RUNTIME_DIR: join(dir, 'run'),
  };
  mkdirSync(env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
  const proc = spawn(process.execPath, [join(REPO, 'bin/spindle.js'), 'serve', ...extraArgs], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const url = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`spindle serve printed no URL in 20 s:\n${out}`)), 20_000);
    const check = () => {
      const m = /listening (http:\/\/127\.0\.0\.1:\d+\/\?token=\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`spindle serve exited (${code}):\n${out}`));
    });
  });
  const u = new URL(url);
  return {
    url,
    port: Number(u.port),
    token: u.searchParams.get('token')!,
    dir,
    env,
    proc,
    output: () => out,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Debian's Chromium, headless, with the flags a machine without outside network needs
 *  and a fresh profile directory (playwright passes it as --user-data-dir). */
export async function launchChromium(): Promise<{ context: BrowserContext; userDataDir: string; close(): Promise<void> }> {
  const userDataDir = mkdtempSync(join(tmpdir(), 'spindle-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
  return {
    context,
    userDataDir,
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

export type Theme = 'light' | 'dark';

/** Opens the app in a new tab at this size and colour scheme; collects page errors. */
export async function openApp(
  context: BrowserContext,
  url: string,
  size: { width: number; height: number },
  theme: Theme,
): Promise<{ page: Page; errors: string[] }> {
  const page = await context.newPage();
  await page.setViewportSize(size);
  await page.emulateMedia({ colorScheme: theme });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  await page.getByRole('status').filter({ hasText: 'Connected' }).waitFor();
  return { page, errors };
}

export interface ApiReply {
  ok: boolean;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each test reads its method's result shape
  result?: any;
  error?: { code: string; message: string };
}

/** One API call over the serve-mode WebSocket, as a client other than the UI. */
export async function apiCall(served: Pick<Served, 'port' | 'token'>, method: string, params: unknown): Promise<ApiReply> {
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

export interface App {
  served: Served;
  page: Page;
  /** Script errors the page raised so far (see openApp). */
  errors: string[];
  /** Closes Chromium, then stops serve (which shuts down VMs and drains disks). */
  close(): Promise<void>;
}

/** A whole session: `spindle serve`, Chromium, the app open at this size and theme, tests/artifacts/ made. */
export async function startApp(size: { width: number; height: number }, theme: Theme): Promise<App> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const served = await startServe();
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  try {
    browser = await launchChromium();
    const { page, errors } = await openApp(browser.context, served.url, size, theme);
    const b = browser;
    return {
      served,
      page,
      errors,
      close: async () => {
        await b.close();
        await served.stop();
      },
    };
  } catch (e) {
    await browser?.close();
    await served.stop();
    throw e;
  }
}
