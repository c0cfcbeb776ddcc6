// The Electron shell's decisions, in Node (Electron's binary does not run here): what the tray
// menu shows for a VM list, whether closing the window hides it or quits, the Quit question, the
// login autostart entry's text, file and removal, and which VMs start when Spindle starts.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VmInfo, VmState } from '../../electron/shared/api.js';
import { trayModel } from '../../electron/host/app/tray-model.js';
import { onWindowClose, quitQuestion } from '../../electron/host/app/window-close.js';
import { desktopEntry, loginAutostartStatus, quoteExecArg, setLoginAutostart } from '../../electron/host/app/login-autostart.js';
import { autostartCandidates, startAutostartVms } from '../../electron/host/vm/autostart-vms.js';
import { SpindleError } from '../../electron/shared/errors.js';

function vm(name: string, state: VmState, extra: Partial<VmInfo['config']> = {}, elsewhere = false): VmInfo {
  return {
    config: {
      version: 1,
      id: name.toLowerCase(),
      name,
      cpus: 1,
      memoryMiB: 256,
      firmware: 'bios',
      boot: { kind: 'disk' },
      disks: [],
      network: { user: true },
      display: 'none',
      createdAt: '2026-01-01T00:00:00.000Z',
      ...extra,
    },
    state,
    warnings: [],
    disks: [],
    vnc: false,
    ...(elsewhere ? { runningElsewhere: { pid: 42 } } : {}),
  };
}

test('tray: one line per VM with its state, running ones first, then Show Spindle and Quit', () => {
  const m = trayModel([vm('zeta', 'stopped'), vm('alpha', 'paused'), vm('beta', 'running'), vm('gamma', 'crashed')]);
  assert.equal(m.tooltip, 'Spindle: 2 VMs running');
  assert.deepEqual(
    m.items.map((i) => (i.kind === 'separator' ? '---' : i.label)),
    ['alpha — paused', 'beta — running', 'gamma — crashed', 'zeta — stopped', '---', 'Show Spindle', 'Quit'],
  );
  assert.deepEqual(
    m.items.filter((i) => i.kind === 'action').map((i) => (i.kind === 'action' ? i.action : '')),
    ['show', 'quit'],
  );
});

test('tray: no VMs, one VM, a VM run by another process', () => {
  const empty = trayModel([]);
  assert.equal(empty.tooltip, 'Spindle: no VM running');
  assert.equal(empty.items[0]!.kind === 'vm' && empty.items[0]!.label, 'No VMs yet');
  assert.equal(trayModel([vm('a', 'shutting-down')]).tooltip, 'Spindle: 1 VM running');
  const other = trayModel([vm('a', 'stopped', {}, true)]).items[0]!;
  assert.equal(other.kind === 'vm' && other.label, 'a — running in another Spindle process');
});

test('closing the window hides it while a VM is live, quits otherwise, and always closes during a quit', () => {
  assert.equal(onWindowClose([vm('a', 'running')], false), 'hide');
  assert.equal(onWindowClose([vm('a', 'starting'), vm('b', 'stopped')], false), 'hide');
  assert.equal(onWindowClose([vm('a', 'paused')], false), 'hide');
  assert.equal(onWindowClose([vm('a', 'stopped'), vm('b', 'crashed')], false), 'quit');
  assert.equal(onWindowClose([], false), 'quit');
  assert.equal(onWindowClose([vm('a', 'running')], true), 'quit');
});

test('Quit asks only with live VMs, naming one or counting several', () => {
  assert.equal(quitQuestion([vm('a', 'stopped')]), null);
  assert.equal(quitQuestion([vm('demo', 'running')])!.message, "The VM 'demo' is running.");
  assert.equal(quitQuestion([vm('a', 'running'), vm('b', 'paused')])!.message, '2 VMs are running.');
  assert.match(quitQuestion([vm('a', 'running')])!.detail, /shuts them down/);
});

test('desktop entry: Exec quoted by the XDG rules; a relative program is refused', () => {
  assert.equal(quoteExecArg('/usr/bin/node'), '/usr/bin/node');
  assert.equal(quoteExecArg('/opt/my app/spindle'), '"/opt/my app/spindle"');
  assert.equal(quoteExecArg('a"b$c'), '"a\\\\"b\\\\$c"');
  assert.equal(quoteExecArg('100%'), '"100%%"');
  const text = desktopEntry(['/usr/bin/node', '/opt/sp ace/bin/spindle.js', 'serve', '--headless']);
  assert.match(text, /^\[Desktop Entry\]\nType=Application\nName=Spindle\n/);
  assert.match(text, /^Exec=\/usr\/bin\/node "\/opt\/sp ace\/bin\/spindle\.js" serve --headless$/m);
  assert.throws(
    () => desktopEntry(['node', 'x']),
    (e: SpindleError) => e.code === 'INVALID_ARGUMENT' && /absolute/.test(e.message),
  );
});

test('start at login: nothing written until asked; on writes the entry, off removes it; a Hidden entry counts as off', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-autostart-'));
  try {
    const env = { XDG_CONFIG_HOME: join(dir, 'cfg') };
    const path = join(dir, 'cfg', 'autostart', 'spindle.desktop');
    assert.deepEqual(loginAutostartStatus(env), { enabled: false, path });
    assert.equal(existsSync(join(dir, 'cfg')), false, 'asking the status writes nothing');
    const on = setLoginAutostart(true, ['/usr/bin/node', '/x/bin/spindle.js', 'serve', '--headless'], env);
    assert.deepEqual(on, { enabled: true, path, command: '/usr/bin/node /x/bin/spindle.js serve --headless' });
    assert.match(readFileSync(path, 'utf8'), /^Exec=\/usr\/bin\/node \/x\/bin\/spindle\.js serve --headless$/m);
    const off = setLoginAutostart(false, [], env);
    assert.deepEqual(off, { enabled: false, path });
    assert.equal(existsSync(path), false);
    mkdirSync(join(dir, 'cfg', 'autostart'), { recursive: true });
    writeFileSync(path, '[Desktop Entry]\nExec=/bin/true\nHidden=true\n');
    assert.equal(loginAutostartStatus(env).enabled, false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('start when Spindle starts: only marked, stopped VMs not run elsewhere; one failure does not stop the others', async () => {
  const vms = [
    vm('a', 'stopped', { autostart: true }),
    vm('b', 'stopped'),
    vm('c', 'running', { autostart: true }),
    vm('d', 'crashed', { autostart: true }),
    vm('e', 'stopped', { autostart: true }, true),
    vm('f', 'stopped', { autostart: false }),
  ];
  assert.deepEqual(
    autostartCandidates(vms).map((v) => v.config.id),
    ['a', 'd'],
  );
  const started: string[] = [];
  const lines: string[] = [];
  const out = await startAutostartVms(
    {
      list: () => ({ vms }),
      start: async (id) => {
        if (id === 'a') throw new SpindleError('NOT_FOUND', 'The boot file /k does not exist.');
        started.push(id);
        return vms.find((v) => v.config.id === id)!;
      },
    },
    (l) => lines.push(l),
  );
  assert.deepEqual(started, ['d']);
  assert.deepEqual(out, [
    { vmId: 'a', name: 'a', started: false, reason: 'The boot file /k does not exist.' },
    { vmId: 'd', name: 'd', started: true },
  ]);
  assert.match(lines[0]!, /could not start 'a'.*does not exist/);
});
