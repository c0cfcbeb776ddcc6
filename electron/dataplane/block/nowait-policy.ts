// Adaptive RWF_NOWAIT: per direction, when too many nowait requests bounce to the
// thread pool (a sparse file being allocated, a filesystem where nowait writes always bounce),
// stop asking for nowait, say why, and probe again later. Pure logic over counter samples.

export type NowaitDirection = 'read' | 'write';

export interface NowaitPolicyOptions {
  /** Nowait submissions per judgement window ("the last few thousand requests"). */
  windowRequests: number;
  /** Fallback ratio above which nowait is turned off for the direction. */
  maxFallbackRatio: number;
  /** While off, probe again after this many requests in that direction... */
  probeAfterRequests: number;
  /** ...or after this long, whichever comes first. */
  probeAfterMs: number;
}

export const DEFAULT_NOWAIT_POLICY: NowaitPolicyOptions = {
  windowRequests: 2048,
  maxFallbackRatio: 0.2,
  probeAfterRequests: 200_000,
  probeAfterMs: 60_000,
};

/** Cumulative counts for one direction, as the engine counters hold them. */
export interface NowaitSample {
  /** Requests submitted with nowait. */
  submitted: number;
  /** Of those, the ones that bounced to the thread pool. */
  fallbacks: number;
  /** All completed requests in this direction (with or without nowait). */
  ops: number;
}

export interface NowaitEvent {
  direction: NowaitDirection;
  /** Nowait is now on (a probe) or off. */
  enabled: boolean;
  /** The ratio that led to turning it off (0 for a probe). */
  fallbackRatio: number;
  /** A sentence for the event log and the API. */
  message: string;
  atMs: number;
}

interface DirectionState {
  enabled: boolean;
  windowSubmitted: number;
  windowFallbacks: number;
  offAtMs: number;
  offAtOps: number;
}

const WHY: Record<NowaitDirection, string> = {
  write: 'this file is sparse and being allocated (or the filesystem makes nowait writes wait); preallocate it to make native fast',
  read: 'reads would have blocked in the filesystem (page-cache overlap or locks)',
};

export class NowaitPolicy {
  private readonly state: Record<NowaitDirection, DirectionState>;
  private readonly opts: NowaitPolicyOptions;

  constructor(start: { read: NowaitSample; write: NowaitSample }, options: Partial<NowaitPolicyOptions> = {}) {
    this.opts = { ...DEFAULT_NOWAIT_POLICY, ...options };
    const init = (s: NowaitSample): DirectionState => ({
      enabled: true,
      windowSubmitted: s.submitted,
      windowFallbacks: s.fallbacks,
      offAtMs: 0,
      offAtOps: 0,
    });
    this.state = { read: init(start.read), write: init(start.write) };
  }

  enabled(direction: NowaitDirection): boolean {
    return this.state[direction].enabled;
  }

  /** Feeds the current cumulative counts; returns the switches to apply (usually none). */
  update(sample: { read: NowaitSample; write: NowaitSample }, nowMs: number): NowaitEvent[] {
    const events: NowaitEvent[] = [];
    for (const direction of ['read', 'write'] as const) {
      const e = this.step(direction, sample[direction], nowMs);
      if (e) events.push(e);
    }
    return events;
  }

  private step(direction: NowaitDirection, s: NowaitSample, nowMs: number): NowaitEvent | null {
    const st = this.state[direction];
    const o = this.opts;
    if (st.enabled) {
      const submitted = s.submitted - st.windowSubmitted;
      if (submitted < o.windowRequests) return null;
      const ratio = (s.fallbacks - st.windowFallbacks) / submitted;
      st.windowSubmitted = s.submitted;
      st.windowFallbacks = s.fallbacks;
      if (ratio <= o.maxFallbackRatio) return null;
      st.enabled = false;
      st.offAtMs = nowMs;
      st.offAtOps = s.ops;
      const pct = Math.round(ratio * 100);
      return {
        direction,
        enabled: false,
        fallbackRatio: ratio,
        atMs: nowMs,
        message: `${direction}s fell back ${pct}% of the time: ${WHY[direction]}. Nowait is off for ${direction}s; probing again in ${Math.round(o.probeAfterMs / 1000)} s or ${o.probeAfterRequests} ${direction}s.`,
      };
    }
    if (s.ops - st.offAtOps < o.probeAfterRequests && nowMs - st.offAtMs < o.probeAfterMs) return null;
    st.enabled = true;
    st.windowSubmitted = s.submitted;
    st.windowFallbacks = s.fallbacks;
    return { direction, enabled: true, fallbackRatio: 0, atMs: nowMs, message: `probing nowait for ${direction}s again` };
  }
}
