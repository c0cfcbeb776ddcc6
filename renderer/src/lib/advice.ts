// The advisor badge's words (issue 5 §1, issue 8 §8) from a FileAdvice.
import type { FileAdvice } from '../../../electron/api/contract.js';

export function verdict(a: FileAdvice): { text: string; tone: 'ok' | 'warn' | '' } {
  if (a.kind === 'block') return { text: 'host device: native + none recommended', tone: 'ok' };
  if (a.safeForNative && !a.sparse) return { text: 'fully allocated: safe for native', tone: 'ok' };
  if (a.sparse) return { text: 'sparse: native may stall; preallocate?', tone: 'warn' };
  return { text: a.directIo ? 'not qualified for native yet' : 'no O_DIRECT on this filesystem: native unavailable', tone: 'warn' };
}
