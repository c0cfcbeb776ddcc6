// The VM settings panel against a real `spindle serve` and real QEMU: a VM made in the New VM
// dialog (q35, TPM), then edited in its Settings tab (memory, vCPUs, a port forward, an extra
// CD-ROM with a real ISO, the boot order), a refused bridge that says why and changes nothing,
// the edit still there after a reload; then, running (SeaBIOS finding nothing to boot, so no guest
// is needed), the panel says what needs a stopped VM and changes the CD-ROM live over QMP.
// Only visible controls are clicked; screenshots at 1024 and 1920 px in tests/artifacts.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { startApp, apiCall as callApi, type App } from './lib/serve.js';
import { click, check, fill, select, until, checkLayouts } from './lib/ui.js';
import { tempDir } from '../lib/loop.js';
import { makeDataIso } from '../lib/test-iso.js';
import type { VmInfo } from '../../electron/shared/api.js';

let app: App;
let page: Page;
let tmp: ReturnType<typeof tempDir>;
let iso: string;
let id = '';

before(async () => {
  tmp = tempDir('spindle-e2e-settings-');
  iso = makeDataIso(tmp.path, 'drivers', 'DRIVERS', 'driver disc');
  app = await startApp({ width: 1280, height: 800 }, 'light');
  page = app.page;
});
after(async () => {
  if (id) await callApi(app.served, 'vm.forceOff', { id }).catch(() => undefined);
  await app?.close();
  tmp?.cleanup();
});

const getVm = async (): Promise<VmInfo> => {
  const r = await callApi(app.served, 'vm.get', { id });
  assert.ok(r.ok, r.error?.message);
  return r.result as VmInfo;
};
const settings = () => page.getByRole('form', { name: 'VM settings' });

test('a VM made with q35 and a TPM is edited in its Settings tab, and the edit is kept', async () => {
  await click(page.getByRole('navigation').getByRole('button', { name: 'New VM' }));
  const dialog = page.getByRole('dialog', { name: 'New virtual machine' });
  await fill(dialog.getByLabel('Name'), 'Settings Box');
  await check(dialog.getByLabel('its first disk'));
  await check(dialog.getByLabel(/TPM 2.0/));
  await click(dialog.getByRole('button', { name: 'Create VM' }));
  await page.getByRole('heading', { name: 'Settings Box', exact: true }).waitFor();
  id = (await callApi(app.served, 'vm.list', {})).result.vms.find((v: VmInfo) => v.config.name === 'Settings Box').config.id;
  let vm = await getVm();
  assert.equal(vm.config.machine, 'q35');
  assert.equal(vm.config.tpm, true);

  await click(page.getByRole('tab', { name: 'Settings' }));
  const form = settings();
  assert.equal(await form.getByLabel('Machine type').inputValue(), 'q35');
  assert.equal(await form.getByLabel(/TPM 2.0/).isChecked(), true);
  await fill(form.getByLabel('Memory (MiB)'), '1024');
  await fill(form.getByLabel('vCPUs'), '2');
  await click(form.getByRole('button', { name: 'Add port forward' }));
  await fill(form.getByLabel('Host port of forward 1'), '2222');
  await fill(form.getByLabel('Guest port of forward 1'), '22');
  await click(form.getByRole('button', { name: 'Add CD-ROM drive' }));
  await fill(form.getByLabel(/cd1 \(empty when blank\)/), iso);
  await select(form.getByLabel('Device to add to the boot order'), 'cd1');
  await click(form.getByRole('button', { name: 'Add to boot order' }));
  await select(form.getByLabel('Device to add to the boot order'), 'net0');
  await click(form.getByRole('button', { name: 'Add to boot order' }));
  await click(form.getByRole('button', { name: 'Move net0 up' }));
  await checkLayouts(page, 'vm-settings-editing', { widths: [1024, 1920] });
  await click(form.getByRole('button', { name: 'Save settings' }));
  await form.getByTestId('settings-saved').waitFor();

  vm = await getVm();
  assert.equal(vm.config.memoryMiB, 1024);
  assert.equal(vm.config.cpus, 2);
  assert.deepEqual(vm.config.network.forwards, [{ proto: 'tcp', hostPort: 2222, guestPort: 22 }]);
  assert.deepEqual(vm.config.cdroms, [iso]);
  assert.deepEqual(vm.config.bootOrder, ['net0', 'cd1']);

  // A bridge the host does not have: the sentence says why, and nothing changes.
  await check(form.getByLabel('a host bridge'));
  await fill(form.getByLabel(/Host bridge/), 'nobr0');
  await click(form.getByRole('button', { name: 'Save settings' }));
  const err = form.getByTestId('settings-error');
  await err.waitFor();
  assert.match((await err.textContent())!, /no network interface 'nobr0'/);
  assert.equal((await getVm()).config.network.bridge, undefined);
  await click(form.getByRole('button', { name: 'Discard changes' }));

  // A reload reads the settings back from the backend.
  await page.reload();
  await click(page.getByRole('tab', { name: 'Settings' }));
  assert.equal(await settings().getByLabel('Memory (MiB)').inputValue(), '1024');
  assert.equal(await settings().getByLabel('Host port of forward 1').inputValue(), '2222');
});

test('running: the panel says what needs a stopped VM, and inserts and ejects a CD-ROM live', async () => {
  await click(page.getByRole('button', { name: 'Start', exact: true }));
  await until(
    'the VM to run',
    () => getVm().then((v) => v.state),
    (s) => s === 'running',
    120_000,
  );
  const form = settings();
  await form.getByTestId('settings-running').waitFor();
  assert.equal(await form.getByLabel('Memory (MiB)').isDisabled(), true, 'memory changes need a stopped VM');
  assert.equal(await form.getByLabel('Machine type').isDisabled(), true);

  await click(form.getByRole('button', { name: 'Eject cd1' }));
  await until(
    'cd1 to be empty',
    () => getVm().then((v) => v.media),
    (m) => JSON.stringify(m) === JSON.stringify([{ drive: 'cd1', path: null }]),
  );
  await fill(form.getByLabel('ISO to insert in cd1'), iso);
  await checkLayouts(page, 'vm-settings-running', { widths: [1024, 1920] });
  await click(form.getByRole('button', { name: 'Insert' }));
  await until(
    'cd1 to hold the ISO',
    () => getVm().then((v) => v.media),
    (m) => JSON.stringify(m) === JSON.stringify([{ drive: 'cd1', path: iso }]),
  );
  await form.getByRole('button', { name: 'Eject cd1' }).waitFor();
  assert.deepEqual((await getVm()).config.cdroms, [iso], 'the inserted ISO is kept in the config');
  await callApi(app.served, 'vm.forceOff', { id });
});
