// Assembles the main-process backend (store, VM manager, stats sampler, router) once, for the
// Electron shell, `spindle serve` and the CLI's foreground mode alike.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import type { AppInfo } from '../shared/api.js';
import { createRouter, type RouterBackend } from './router.js';
import type { ApiHandler } from './session.js';
import { VmManager, type VmManagerOptions } from '../host/vm/manager.js';
import { VmStore } from '../host/vm/store.js';
import { configDir, dataDir, vmConfigDir } from '../host/vm/paths.js';
import { findOvmf, findSecureBootOvmf, findQemu, resolveAccelerator, chooseAccelerator } from '../host/vm/launcher.js';
import { findSwtpm } from '../host/vm/tpm.js';
import { StatsSampler } from '../host/stats/sampler.js';
import { SpindleError } from '../shared/errors.js';
import { createAdvisorLayer, hostDevicesLayer } from './advisor-api.js';
import { createScratchDisk, ensureScratchDisk, scratchInfo } from '../host/vm/scratch.js';
import { createBenchLayer } from './bench-api.js';
import { loginAutostartStatus, setLoginAutostart } from '../host/app/login-autostart.js';

/** `spindle serve --headless` with this Node and this checkout's bin/spindle.js. */
export function defaultLoginCommand(): string[] {
  return [process.execPath, fileURLToPath(new URL('../../../bin/spindle.js', import.meta.url)), 'serve', '--headless'];
}

export interface Backend {
  router: ApiHandler;
  manager: VmManager;
  sampler: StatsSampler;
  /** First start: makes the scratch disk when there are no VMs yet (the app and serve call this). Its path, or null. */
  ensureScratchDisk(): string | null;
  /** Stops the sampler and every running VM (drains disks). */
  close(): Promise<void>;
}

export interface BackendOptions extends Partial<Omit<VmManagerOptions, 'store'>> {
  /** What "start Spindle at login" runs (argv, absolute program first); default: this Node running `spindle serve --headless`. */
  loginCommand?: string[];
  extra?: Partial<Omit<RouterBackend, 'manager' | 'sampler' | 'appInfo'>>;
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

export async function appInfo(env: NodeJS.ProcessEnv = process.env, qemuBinary?: string): Promise<AppInfo> {
  let qemu: AppInfo['qemu'];
  let accel;
  try {
    const path = findQemu(qemuBinary, env);
    const { stdout } = await promisify(execFile)(path, ['--version']);
    qemu = { found: true, path, version: /version (\S+)/.exec(stdout)?.[1] ?? stdout.split('\n')[0] };
    accel = await resolveAccelerator(path, env);
  } catch (err) {
    qemu = { found: false, message: err instanceof SpindleError ? err.message : (err as Error).message };
    accel = chooseAccelerator();
  }
  return {
    version: packageVersion(),
    accelerator: accel.accel,
    ...(accel.warning ? { acceleratorWarning: accel.warning } : {}),
    qemu,
    uefiAvailable: findOvmf() !== null,
    secureBootAvailable: findSecureBootOvmf() !== null,
    tpmAvailable: findSwtpm() !== null,
    configDir: configDir(env),
    dataDir: dataDir(env),
  };
}

export function createBackend(opts: BackendOptions = {}): Backend {
  const env = opts.env ?? process.env;
  // Disks are served by Spindle's own disk servers (the manager's default) unless a caller injects a factory.
  // The bench layer and the manager both consult the manager's disk leases (host/disks/disk-leases.ts).
  const manager = new VmManager({ ...opts, env, store: new VmStore(vmConfigDir(env)) });
  const sampler = new StatsSampler(manager);
  sampler.start();
  const bench = createBenchLayer(manager, env);
  const router = createRouter({
    manager,
    sampler,
    appInfo: () => appInfo(env, opts.qemuBinary),
    hostDevices: hostDevicesLayer,
    advisor: createAdvisorLayer(env),
    loginAutostart: {
      get: () => loginAutostartStatus(env),
      set: (enabled) => setLoginAutostart(enabled, opts.loginCommand ?? defaultLoginCommand(), env),
    },
    scratch: (create) => (create ? createScratchDisk(env) : scratchInfo(env)),
    bench,
    ...opts.extra,
  });
  return {
    router,
    manager,
    sampler,
    ensureScratchDisk: () => ensureScratchDisk(manager.list().vms.length, env),
    async close() {
      sampler.stop();
      await bench.cancelAll();
      await manager.stopAll();
    },
  };
}
