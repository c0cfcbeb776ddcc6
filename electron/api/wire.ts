// How the contract's envelopes (shared/api.ts: WireRequest, WireMessage) travel over the two
// message transports (WebSocket in `spindle serve`, Electron IPC in the app).
//
// client -> server: call | subscribe | unsubscribe (WireRequest)
// server -> client: result (ok or error) answers a call, and a subscribe once the stream runs or
// was refused; event carries one stream event under the subscribe request's id.
import { WireRequest, type WireMessage } from '../shared/api.js';

export type { WireMessage, WireRequest };

/** Largest text message a client may send; API requests are small. */
export const MAX_CLIENT_MESSAGE_BYTES = 1 << 20;

const NAME = /^[a-zA-Z][a-zA-Z0-9_.-]{0,63}$/;

/** Parses and checks one client message; gives the reason as a sentence when it is malformed. */
export function parseClientMessage(text: string): WireRequest | { invalid: string; id: number } {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return { invalid: 'The request is not valid JSON.', id: -1 };
  }
  const id = typeof (m as { id?: unknown } | null)?.id === 'number' ? (m as { id: number }).id : -1;
  const r = WireRequest.safeParse(m);
  if (!r.success) return { invalid: "The request must be an object with kind 'call', 'subscribe' or 'unsubscribe' and a numeric id.", id };
  if (!Number.isSafeInteger(r.data.id) || r.data.id < 0) return { invalid: 'The request id must be a non-negative integer.', id: -1 };
  if (r.data.kind === 'call' && !NAME.test(r.data.method)) return { invalid: 'The request names no valid method.', id };
  if (r.data.kind === 'subscribe' && !NAME.test(r.data.topic)) return { invalid: 'The subscription names no valid topic.', id };
  return r.data;
}
