// The VM list, kept current by the `vms` topic; actions report failures as sentences per VM.
import { api } from '../api.js';
import { sentence } from './app.svelte.js';
import type { ConfigProblem, VmInfo, MethodName } from '../../../../electron/shared/api.js';
import type { DiskConfig } from '../../../../electron/shared/model.js';

export type DiskModes = Pick<DiskConfig, 'aio' | 'cache' | 'nowait'>;
/** A live change of a running VM's disk modes, seen in the VM list (whoever made it). */
export interface ModeSwitch {
  vmId: string;
  diskId: string;
  /** Epoch seconds, like the stats ticks. */
  t: number;
  from: DiskModes;
  to: DiskModes;
}
/** Switches older than the stats window have nothing left to compare. */
const SWITCH_KEEP_SEC = 10 * 60;

class VmsState {
  list = $state<VmInfo[]>([]);
  problems = $state<ConfigProblem[]>([]);
  loaded = $state(false);
  loadError = $state<string | null>(null);
  /** VM id -> the action under way ('start', 'shutdown', …). */
  busy = $state<Record<string, string>>({});
  /** VM id -> the last action's failure. */
  errors = $state<Record<string, string>>({});
  /** VM id -> what the last action did that the user did not ask for (a shutdown that had to force the VM off). */
  notes = $state<Record<string, string>>({});
  /** Live mode switches of the last 10 minutes, oldest first. */
  switches = $state<ModeSwitch[]>([]);
  private unsubscribe: (() => void) | null = null;

  /** Loads the list and follows changes; safe to call again after a reconnect. */
  async start(): Promise<void> {
    if (!this.unsubscribe) {
      this.unsubscribe = api.subscribe('vms', {}, (e) => {
        if (e.type === 'changed') this.upsert(e.vm);
        else this.list = this.list.filter((v) => v.config.id !== e.id);
      });
    }
    try {
      const r = await api.call('vm.list', {});
      this.list = r.vms;
      this.problems = r.problems;
      this.loaded = true;
      this.loadError = null;
    } catch (err) {
      this.loadError = sentence(err);
    }
  }

  upsert(vm: VmInfo): void {
    const prev = this.get(vm.config.id);
    if (prev && isRunning(prev) && isRunning(vm)) this.noteSwitches(prev, vm);
    const i = this.list.findIndex((v) => v.config.id === vm.config.id);
    if (i >= 0) this.list[i] = vm;
    else this.list = [...this.list, vm].sort((a, b) => a.config.name.localeCompare(b.config.name));
  }

  private noteSwitches(prev: VmInfo, next: VmInfo): void {
    const now = Date.now() / 1000;
    const found: ModeSwitch[] = [];
    for (const d of next.config.disks) {
      const p = prev.config.disks.find((x) => x.id === d.id);
      if (p && (p.aio !== d.aio || p.cache !== d.cache || p.nowait !== d.nowait)) {
        found.push({
          vmId: next.config.id,
          diskId: d.id,
          t: now,
          from: { aio: p.aio, cache: p.cache, nowait: p.nowait },
          to: { aio: d.aio, cache: d.cache, nowait: d.nowait },
        });
      }
    }
    if (found.length) this.switches = [...this.switches.filter((x) => x.t > now - SWITCH_KEEP_SEC), ...found];
  }

  /** A disk's live switches: the backend's record (kept while the VM runs, so a reloaded page
   *  still has them), else the ones this page saw. */
  switchesFor(vm: VmInfo, diskId: string): ModeSwitch[] {
    const kept = vm.disks.find((d) => d.id === diskId)?.switches;
    if (kept?.length) return kept.map((x) => ({ vmId: vm.config.id, diskId, ...x }));
    return this.switches.filter((x) => x.vmId === vm.config.id && x.diskId === diskId);
  }

  get(id: string): VmInfo | undefined {
    return this.list.find((v) => v.config.id === id);
  }

  /** Runs one lifecycle action; the VM's own error slot gets the sentence if it fails. */
  async act(id: string, action: 'start' | 'shutdown' | 'forceOff' | 'pause' | 'resume' | 'reset' | 'delete'): Promise<boolean> {
    this.busy[id] = action;
    delete this.errors[id];
    delete this.notes[id];
    try {
      if (action === 'shutdown') {
        const r = await api.call('vm.shutdown', { id, timeoutMs: SHUTDOWN_TIMEOUT_MS });
        this.upsert(r);
        if (r.forced) this.notes[id] = `The guest did not respond to ACPI shutdown in ${SHUTDOWN_TIMEOUT_MS / 1000} s; forced off.`;
        return true;
      }
      const method = `vm.${action}` as MethodName;
      const r = await api.call(method as 'vm.start', { id });
      if (action === 'delete') this.list = this.list.filter((v) => v.config.id !== id);
      else if (r && 'config' in r) this.upsert(r);
      return true;
    } catch (err) {
      this.errors[id] = sentence(err);
      return false;
    } finally {
      delete this.busy[id];
    }
  }
}

/** How long Shut down waits for the guest to power off before forcing it off. */
export const SHUTDOWN_TIMEOUT_MS = 30_000;

export const vms = new VmsState();

export const isRunning = (vm: VmInfo) =>
  vm.state === 'running' || vm.state === 'paused' || vm.state === 'starting' || vm.state === 'shutting-down';
