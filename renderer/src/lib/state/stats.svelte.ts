// The last 5 minutes of stats ticks (600 at 500 ms), from stats.history then the `stats` topic.
// Charts read plain arrays built on demand; only `version` is reactive, so a tick costs one
// signal, not a deep proxy over 600 objects.
import { api } from '../api.js';
import type { DiskSample, StatsTick, VmSample } from '../../../../electron/shared/api.js';

export const WINDOW_MS = 5 * 60 * 1000;

/** Optional nowait counters, shown when the backend reports them. */
export type DiskSampleX = DiskSample & { nowaitFallbacksPerSec?: number; submitStallMaxUs?: number };

export const diskKey = (vmId: string | null, diskId: string) => `${vmId ?? '-'}/${diskId}`;

class StatsState {
  version = $state(0);
  error = $state<string | null>(null);
  private ticks: StatsTick[] = [];
  private started = false;

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    api.subscribe('stats', {}, (tick) => this.push(tick));
    try {
      const { ticks } = await api.call('stats.history', { sinceMs: Date.now() - WINDOW_MS });
      const newest = this.ticks[0]?.t ?? Infinity;
      this.ticks = [...ticks.filter((t) => t.t < newest), ...this.ticks];
      this.version++;
    } catch (err) {
      this.error = (err as Error).message;
    }
  }

  push(tick: StatsTick): void {
    this.ticks.push(tick);
    const cutoff = tick.t - WINDOW_MS;
    let drop = 0;
    while (drop < this.ticks.length && this.ticks[drop].t < cutoff) drop++;
    if (drop) this.ticks.splice(0, drop);
    this.version++;
  }

  latest(): StatsTick | undefined {
    return this.ticks[this.ticks.length - 1];
  }

  /** Time (s) and per-tick samples of one disk; missing ticks are null (gaps in the chart). */
  series(key: string): { t: number[]; samples: (DiskSampleX | null)[] } {
    const t: number[] = [];
    const samples: (DiskSampleX | null)[] = [];
    for (const tick of this.ticks) {
      t.push(tick.t / 1000);
      samples.push(tick.disks.find((d) => diskKey(d.vmId, d.diskId) === key) ?? null);
    }
    return { t, samples };
  }

  vmSeries(vmId: string): { t: number[]; vm: (VmSample | null)[]; disks: DiskSampleX[][] } {
    const t: number[] = [];
    const vm: (VmSample | null)[] = [];
    const disks: DiskSampleX[][] = [];
    for (const tick of this.ticks) {
      t.push(tick.t / 1000);
      vm.push(tick.vms.find((v) => v.vmId === vmId) ?? null);
      disks.push(tick.disks.filter((d) => d.vmId === vmId));
    }
    return { t, vm, disks };
  }
}

export const stats = new StatsState();
