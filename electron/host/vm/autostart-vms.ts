// "Start when Spindle starts": once the host (the app or `spindle serve`) holds the host lock, it
// starts every VM whose config says `autostart: true`, one after another (a TCG boot is heavy on
// a small machine). A VM that cannot start is reported with its reason and the others still start.
import type { VmInfo } from '../../shared/api.js';
import { SpindleError } from '../../shared/errors.js';

export interface AutostartHost {
  list(): { vms: VmInfo[] };
  start(id: string): Promise<VmInfo>;
}

export interface AutostartOutcome {
  vmId: string;
  name: string;
  started: boolean;
  /** Why it did not start, a sentence. */
  reason?: string;
}

/** The VMs to start: asked to, stopped (or crashed) here, not run by another Spindle process. */
export function autostartCandidates(vms: readonly VmInfo[]): VmInfo[] {
  return vms.filter((v) => v.config.autostart === true && (v.state === 'stopped' || v.state === 'crashed') && !v.runningElsewhere);
}

export async function startAutostartVms(host: AutostartHost, log: (line: string) => void = () => undefined): Promise<AutostartOutcome[]> {
  const out: AutostartOutcome[] = [];
  for (const vm of autostartCandidates(host.list().vms)) {
    const { id, name } = vm.config;
    try {
      await host.start(id);
      out.push({ vmId: id, name, started: true });
      log(`started '${name}' (start when Spindle starts)`);
    } catch (err) {
      const reason = err instanceof SpindleError ? err.message : `internal error: ${(err as Error).message}`;
      out.push({ vmId: id, name, started: false, reason });
      log(`could not start '${name}' (start when Spindle starts): ${reason}`);
    }
  }
  return out;
}
