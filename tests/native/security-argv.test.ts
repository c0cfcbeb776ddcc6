// QEMU is spawned with an argv array. A VM whose kernel path, command line and
// runtime directory carry shell metacharacters starts real QEMU; /proc/PID/cmdline shows each
// value as one intact argument, and nothing a shell would have run (touch) happened.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../electron/api/backend.js';
import type { VmInfo } from '../../electron/shared/api.js';
import { findGuestKernel } from '../lib/guest-image.js';

// The test guest's kernel (setup installs it; a missing one fails with the package to install).
const KERNEL = findGuestKernel().kernel;

test('shell metacharacters in paths and the kernel command line reach QEMU as single arguments, never a shell', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-argv-'));
  // File names cannot hold '/': the touch targets are relative, so look in every cwd a shell could have had.
  const token = `PWNED-${process.pid}-`;
  const pwned = (n: number) => `${token}${n}`;
  const weird = join(dir, `k;touch ${pwned(1)};$(touch ${pwned(2)})\`touch ${pwned(3)}\`'"&|<>,x`);
  mkdirSync(weird);
  const kernel = join(weird, `vmlinuz $(touch ${pwned(4)}),y`);
  copyFileSync(KERNEL, kernel);
  const cmdline = `console=ttyS0 $(touch ${join(dir, pwned(5))}) ; touch ${join(dir, pwned(6))} | cat & \`touch ${pwned(7)}\``;
  const runDir = join(dir, `r$(touch ${pwned(8)}),;`);
  const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_RUNTIME_DIR: runDir, XDG_DATA_HOME: join(dir, 'data'), SPINDLE_ACCEL: 'tcg' };
  const backend = createBackend({ env });
  try {
    const vm = (await backend.router.call('vm.create', {
      name: `evil; touch ${pwned(9)}`, memoryMiB: 64, display: 'none', network: { user: false },
      boot: { kind: 'kernel', kernel, cmdline },
    })) as VmInfo;
    const started = (await backend.router.call('vm.start', { id: vm.config.id })) as VmInfo;
    assert.ok(started.pid, 'QEMU is running');
    const argv = readFileSync(`/proc/${started.pid}/cmdline`, 'utf8').split('\0');
    assert.equal(argv[argv.indexOf('-kernel') + 1], kernel, 'the kernel path is one argument, unchanged');
    assert.equal(argv[argv.indexOf('-append') + 1], cmdline, 'the command line is one argument, unchanged');
    const qmp = argv.find((a) => a.startsWith('socket,id=qmp,'))!;
    assert.ok(qmp.includes(`path=${join(runDir, 'spindle').replace(/,/g, ',,')}`), `runtime path kept, commas doubled for QEMU's option parser: ${qmp}`);
    await backend.router.call('vm.forceOff', { id: vm.config.id });
    for (const where of [dir, process.cwd(), '/', tmpdir()]) {
      for (let n = 1; n <= 9; n++) assert.ok(!existsSync(join(where, pwned(n))), `a shell ran: ${join(where, pwned(n))} exists`);
    }
  } finally {
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
