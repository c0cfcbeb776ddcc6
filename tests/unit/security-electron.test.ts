// The Electron security checklist, read statically from the shell's source (the
// Electron binary cannot be downloaded here, so the window cannot be created in tests): isolated,
// sandboxed renderer without Node; strict CSP on every response and in the page; no navigation,
// new windows, webviews or permissions; no remote module; the preload exposes functions only.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import ts from 'typescript';
import { CONTENT_SECURITY_POLICY } from '../../electron/api/ws-server.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const source = (rel: string) => {
  const text = readFileSync(resolve(ROOT, rel), 'utf8');
  return { text, file: ts.createSourceFile(rel, text, ts.ScriptTarget.Latest, true) };
};

function walk(node: ts.Node, visit: (n: ts.Node) => void): void {
  visit(node);
  node.forEachChild((c) => walk(c, visit));
}

/** Literal value of each property in an object literal (true/false/identifier/string text). */
function literalProps(obj: ts.ObjectLiteralExpression): Map<string, string> {
  const out = new Map<string, string>();
  for (const p of obj.properties) if (ts.isPropertyAssignment(p)) out.set(p.name.getText(), p.initializer.getText());
  return out;
}

test('BrowserWindow: context isolation, sandbox, no Node in the renderer, no webviews, web security on', () => {
  const { file } = source('electron/main.ts');
  const windows: ts.NewExpression[] = [];
  walk(file, (n) => {
    if (ts.isNewExpression(n) && n.expression.getText() === 'BrowserWindow') windows.push(n);
  });
  assert.ok(windows.length >= 1, 'main.ts creates a BrowserWindow');
  for (const w of windows) {
    const opts = w.arguments?.[0];
    assert.ok(opts && ts.isObjectLiteralExpression(opts), 'options are an object literal');
    const wp = opts.properties.find((p) => p.name?.getText() === 'webPreferences');
    assert.ok(wp && ts.isPropertyAssignment(wp) && ts.isObjectLiteralExpression(wp.initializer), 'webPreferences are spelled out');
    const prefs = literalProps(wp.initializer);
    const required: Record<string, string> = {
      contextIsolation: 'true',
      sandbox: 'true',
      nodeIntegration: 'false',
      nodeIntegrationInWorker: 'false',
      webviewTag: 'false',
      allowRunningInsecureContent: 'false',
    };
    for (const [k, v] of Object.entries(required)) assert.equal(prefs.get(k), v, `webPreferences.${k} must be ${v}`);
    assert.notEqual(prefs.get('webSecurity'), 'false');
    assert.ok(!prefs.has('enableRemoteModule') && !prefs.has('nodeIntegrationInSubFrames'), 'no remote module, no Node in frames');
  }
});

test('no navigation, no new windows, no webviews, no permissions; no remote module anywhere in the shell', () => {
  const { text } = source('electron/main.ts');
  assert.match(text, /on\('web-contents-created',[^)]*\)\s*=>\s*lockDown\(contents\)\)/, 'every web contents is locked down');
  assert.match(
    text,
    /on\('will-navigate', \(e, url\) => \{\s*if \(!url\.startsWith\(ORIGIN\)\) e\.preventDefault\(\);/,
    'navigation off the app origin is prevented',
  );
  assert.match(text, /on\('will-redirect'/);
  assert.match(text, /on\('will-attach-webview', \(e\) => e\.preventDefault\(\)\)/);
  assert.match(text, /setWindowOpenHandler\(\(\) => \(\{ action: 'deny' \}\)\)/, 'window.open is denied');
  assert.match(text, /setPermissionRequestHandler\(\([^)]*\) => callback\(false\)\)/, 'every permission request is refused');
  for (const rel of ['electron/main.ts', 'electron/preload.cts']) {
    const t = readFileSync(resolve(ROOT, rel), 'utf8');
    assert.doesNotMatch(t, /@electron\/remote|enableRemoteModule|require\(['"]electron['"]\)\.remote/, `${rel} uses no remote module`);
    assert.doesNotMatch(t, /shell\.openExternal\(/, `${rel} opens no URLs from the renderer`);
  }
});

test('CSP: strict on every app:// response and in the page itself; scripts only from the app', () => {
  const { text } = source('electron/main.ts');
  assert.match(text, /'content-security-policy': CONTENT_SECURITY_POLICY/, 'protocol handler sends the CSP header');
  const directives = new Map(
    CONTENT_SECURITY_POLICY.split(';')
      .map((d) => d.trim().split(/\s+/))
      .map(([k, ...v]) => [k!, v]),
  );
  assert.deepEqual(directives.get('default-src'), ["'none'"]);
  assert.deepEqual(directives.get('script-src'), ["'self'"], 'no inline or eval scripts, no remote scripts');
  assert.deepEqual(directives.get('object-src'), ["'none'"]);
  assert.deepEqual(directives.get('base-uri'), ["'none'"]);
  assert.deepEqual(directives.get('frame-ancestors'), ["'none'"]);
  assert.deepEqual(directives.get('connect-src'), ["'self'"]);
  for (const [k, v] of directives) assert.ok(!v.includes('*') && !v.some((s) => /^https?:/.test(s)), `${k} allows no remote origin`);
  const html = readFileSync(resolve(ROOT, 'renderer/index.html'), 'utf8');
  const meta = /http-equiv="Content-Security-Policy"\s+content="([^"]+)"/.exec(html)?.[1];
  assert.ok(meta, 'the page carries its own CSP');
  const norm = (s: string) =>
    s
      .split(';')
      .map((d) => d.trim())
      .filter((d) => !d.startsWith('frame-ancestors'))
      .sort();
  assert.deepEqual(norm(meta), norm(CONTENT_SECURITY_POLICY), 'page and header policies agree (frame-ancestors is header-only)');
});

test('preload exposes one object of functions, never ipcRenderer or Node objects', () => {
  const { file, text } = source('electron/preload.cts');
  const calls: ts.CallExpression[] = [];
  walk(file, (n) => {
    if (ts.isCallExpression(n) && n.expression.getText() === 'contextBridge.exposeInMainWorld') calls.push(n);
  });
  assert.equal(calls.length, 1);
  const exposed = calls[0]!.arguments[1]!.getText();
  assert.ok(!['ipcRenderer', 'process', 'require', 'electron'].includes(exposed));
  assert.doesNotMatch(text, /exposeInMainWorld\([^)]*ipcRenderer\s*\)/);
  assert.doesNotMatch(text, /:\s*ipcRenderer\s*[,}]/, 'ipcRenderer itself is not a property of the bridge');
});
