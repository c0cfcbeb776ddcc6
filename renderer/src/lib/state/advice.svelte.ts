// The advisor's findings and the comparison's verdict for one disk path, loaded through the API
// and shared by the disk row and the Add disk dialog.
import { api, ApiCallError } from '../api.js';
import { sentence } from './app.svelte.js';
import { fastest } from '../compare.js';
import type { FileAdvice, Params } from '../../../../electron/shared/api.js';
import type { Measured } from '../presets.js';

export type AdvisorAction = 'inspect' | 'probe' | 'preallocate';

export class PathAdvice {
  advice = $state<FileAdvice | null>(null);
  error = $state<string | null>(null);
  /** The refusal's code ('NOT_A_DISK' for a container format such as qcow2). */
  errorCode = $state<string | null>(null);
  busy = $state<AdvisorAction | null>(null);
  /** What the aio comparison found fastest on this disk, if it was measured. */
  measured = $state<Measured | null>(null);
  /** Bumped on every load: an answer for a path the user has since changed is dropped. */
  private generation = 0;

  constructor(private path: string) {}

  async run(what: AdvisorAction): Promise<void> {
    const gen = ++this.generation;
    this.busy = what;
    this.error = null;
    this.errorCode = null;
    try {
      const method = what === 'inspect' ? 'advisor.inspect' : what === 'probe' ? 'advisor.probe' : 'advisor.preallocate';
      const a = await api.call(method, { path: this.path });
      if (gen === this.generation) this.advice = a;
    } catch (err) {
      if (gen === this.generation) {
        this.advice = null;
        this.error = sentence(err);
        this.errorCode = err instanceof ApiCallError ? err.code : null;
      }
    } finally {
      if (gen === this.generation) this.busy = null;
    }
  }

  /** Reads the newest completed comparison of this disk (by VM disk or by path). */
  async loadMeasured(target: Params<'bench.history'>['target']): Promise<void> {
    try {
      const { runs } = await api.call('bench.history', { target });
      this.measured = runs.length ? fastest(runs[0]) : null;
    } catch {
      this.measured = null; // no comparison layer or no history: the preset says it is not measured
    }
  }
}
