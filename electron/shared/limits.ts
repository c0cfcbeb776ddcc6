// Per-disk I/O limits with QEMU's names and rules (QEMU docs/throttle.txt, util/throttle.c
// throttle_is_valid): an average rate per bucket (iops or bytes/s; total, read or write), an
// optional burst rate (`…Max`) that may last `…MaxLength` seconds, and `iopsSize` (a request
// larger than it counts as several operations). The data plane enforces them
// (dataplane/block/throttle.ts); this file is pure so the renderer and the CLI share it.
import { z } from 'zod';
import { SpindleError } from './errors.js';
import { formatSize, parseSize } from './size.js';

export const LIMIT_KINDS = ['iops', 'bps'] as const;
export const LIMIT_SCOPES = ['total', 'read', 'write'] as const;
export type LimitKind = (typeof LIMIT_KINDS)[number];
export type LimitScope = (typeof LIMIT_SCOPES)[number];

/** QEMU's THROTTLE_VALUE_MAX. */
export const LIMIT_VALUE_MAX = 1e15;

const rate = z.number().positive().max(LIMIT_VALUE_MAX);
const length = z.int().min(1).max(86_400);

const shape = {
  iopsTotal: rate.optional(),
  iopsTotalMax: rate.optional(),
  iopsTotalMaxLength: length.optional(),
  iopsRead: rate.optional(),
  iopsReadMax: rate.optional(),
  iopsReadMaxLength: length.optional(),
  iopsWrite: rate.optional(),
  iopsWriteMax: rate.optional(),
  iopsWriteMaxLength: length.optional(),
  bpsTotal: rate.optional(),
  bpsTotalMax: rate.optional(),
  bpsTotalMaxLength: length.optional(),
  bpsRead: rate.optional(),
  bpsReadMax: rate.optional(),
  bpsReadMaxLength: length.optional(),
  bpsWrite: rate.optional(),
  bpsWriteMax: rate.optional(),
  bpsWriteMaxLength: length.optional(),
  /** Bytes: a request of n × iopsSize bytes counts as n operations (QEMU's iops-size). */
  iopsSize: z
    .int()
    .min(512)
    .max(1 << 30)
    .optional(),
};
export type IoLimitsShape = { [K in keyof typeof shape]?: number };

/** One bucket's settings as QEMU names them: avg, max (burst rate), maxLength (burst seconds). */
export interface LimitBucket {
  kind: LimitKind;
  scope: LimitScope;
  avg: number;
  max: number | undefined;
  maxLength: number;
}

const cap = (s: string): string => s[0]!.toUpperCase() + s.slice(1);
/** The model key of a bucket's field: iopsRead, iopsReadMax, iopsReadMaxLength. */
export function limitKey(kind: LimitKind, scope: LimitScope, field: '' | 'Max' | 'MaxLength' = ''): keyof IoLimitsShape {
  return `${kind}${cap(scope)}${field}` as keyof IoLimitsShape;
}
/** QEMU's option name of a model key: iopsReadMaxLength → iops-read-max-length. */
export function qemuName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The buckets with an average set (the ones that limit anything). */
export function limitBuckets(l: IoLimitsShape): LimitBucket[] {
  const out: LimitBucket[] = [];
  for (const kind of LIMIT_KINDS)
    for (const scope of LIMIT_SCOPES) {
      const avg = l[limitKey(kind, scope)];
      if (avg === undefined) continue;
      out.push({ kind, scope, avg, max: l[limitKey(kind, scope, 'Max')], maxLength: l[limitKey(kind, scope, 'MaxLength')] ?? 1 });
    }
  return out;
}

/** The first rule `l` breaks, as a sentence (QEMU's throttle_is_valid), or null. */
export function limitsProblem(l: IoLimitsShape): string | null {
  for (const kind of LIMIT_KINDS) {
    const has = (scope: LimitScope, f: '' | 'Max'): boolean => l[limitKey(kind, scope, f)] !== undefined;
    for (const f of ['', 'Max'] as const)
      if (has('total', f) && (has('read', f) || has('write', f)))
        return `${qemuName(limitKey(kind, 'total', f))} cannot be combined with ${kind}-read${f ? '-max' : ''} or ${kind}-write${f ? '-max' : ''}: limit the total, or reads and writes separately.`;
    for (const scope of LIMIT_SCOPES) {
      const avg = l[limitKey(kind, scope)];
      const max = l[limitKey(kind, scope, 'Max')];
      const len = l[limitKey(kind, scope, 'MaxLength')];
      const name = qemuName(limitKey(kind, scope));
      if (max !== undefined && avg === undefined) return `${name}-max needs ${name} (the rate it settles to after the burst).`;
      if (max !== undefined && avg !== undefined && max < avg) return `${name}-max (${max}) cannot be lower than ${name} (${avg}).`;
      if (len !== undefined && len > 1 && max === undefined) return `${name}-max-length needs ${name}-max (the burst rate it lasts at).`;
      if (len !== undefined && max !== undefined && len > LIMIT_VALUE_MAX / max)
        return `${name}-max-length is too long for that burst rate.`;
    }
  }
  if (l.iopsSize !== undefined && !LIMIT_SCOPES.some((s) => l[limitKey('iops', s)] !== undefined))
    return 'iops-size needs an iops limit (iops-total, iops-read or iops-write).';
  return null;
}

export const IoLimits = z.strictObject(shape).superRefine((l, ctx) => {
  const problem = limitsProblem(l);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});
export type IoLimits = z.infer<typeof IoLimits>;

export function hasLimits(l: IoLimitsShape | undefined): boolean {
  return !!l && limitBuckets(l).length > 0;
}

/**
 * Limits from QEMU-style text: "iops-total=500,bps-write=50M,bps-write-max=200M,bps-write-max-length=10";
 * "none" (or "") clears them. Byte rates take sizes (K/M/G, 1024-based); counts are plain numbers.
 */
export function parseLimits(text: string): IoLimits {
  const input = text.trim();
  if (input === '' || input === 'none') return {};
  const out: Record<string, number> = {};
  for (const part of input.split(',')) {
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim();
    const value = eq < 0 ? '' : part.slice(eq + 1).trim();
    const key = Object.keys(shape).find((k) => qemuName(k) === name);
    if (!key)
      throw new SpindleError(
        'INVALID_ARGUMENT',
        `'${name}' is not a limit: use iops-total, iops-read, iops-write, bps-total, bps-read, bps-write (each with -max and -max-length) or iops-size.`,
      );
    if (!value) throw new SpindleError('INVALID_ARGUMENT', `${name} needs a value, like ${name}=100.`);
    const bytes = key.startsWith('bps') && !key.endsWith('MaxLength');
    const n = bytes || key === 'iopsSize' ? parseSize(value) : Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new SpindleError('INVALID_ARGUMENT', `${name}=${value} is not a positive number.`);
    out[key] = n;
  }
  const parsed = IoLimits.safeParse(out);
  if (!parsed.success) throw new SpindleError('INVALID_ARGUMENT', parsed.error.issues[0]!.message);
  return parsed.data;
}

/** "iops-read=500 (burst 2000 for 10 s), bps-write=50 MiB/s" or "none". */
export function describeLimits(l: IoLimitsShape | undefined): string {
  const buckets = l ? limitBuckets(l) : [];
  if (buckets.length === 0) return 'none';
  const v = (b: LimitBucket, x: number): string => (b.kind === 'bps' ? `${formatSize(x)}/s` : String(x));
  const parts = buckets.map((b) => {
    const burst = b.max !== undefined ? ` (burst ${v(b, b.max)}${b.maxLength > 1 ? ` for ${b.maxLength} s` : ''})` : '';
    return `${b.kind}-${b.scope}=${v(b, b.avg)}${burst}`;
  });
  if (l?.iopsSize) parts.push(`iops-size=${formatSize(l.iopsSize)}`);
  return parts.join(', ');
}
