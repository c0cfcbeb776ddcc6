// The message format both transports speak (WebSocket in `spindle serve`, Electron IPC in the
// app). Pure and dependency-free: the renderer's API client imports it too.
//
// client -> server: call (one answer), sub (a stream of events until unsub or end)
// server -> client: result | error for a call; event* then end for a subscription.
// An event whose payload is bytes (console output) travels as a binary WebSocket frame:
// 4 bytes little-endian subscription id, then the bytes. Over IPC bytes are a Uint8Array.

export interface WireError {
  code: string;
  message: string;
}

export type ClientMessage =
  | { t: 'call'; id: number; method: string; params?: unknown }
  | { t: 'sub'; id: number; stream: string; params?: unknown }
  | { t: 'unsub'; id: number };

export type ServerMessage =
  | { t: 'result'; id: number; result: unknown }
  | { t: 'error'; id: number; error: WireError }
  | { t: 'event'; id: number; event: unknown }
  | { t: 'end'; id: number; error?: WireError };

/** Largest text message a client may send; API requests are small. */
export const MAX_CLIENT_MESSAGE_BYTES = 1 << 20;

const NAME = /^[a-zA-Z][a-zA-Z0-9_.-]{0,63}$/;

/** Parses and checks one client message; returns the reason as a sentence when it is malformed. */
export function parseClientMessage(text: string): ClientMessage | { invalid: string; id?: number } {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return { invalid: 'The request is not valid JSON.' };
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return { invalid: 'The request must be a JSON object.' };
  const o = m as Record<string, unknown>;
  const id = o.id;
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) return { invalid: 'The request needs a non-negative integer id.' };
  switch (o.t) {
    case 'call':
      if (typeof o.method !== 'string' || !NAME.test(o.method)) return { invalid: 'The request names no valid method.', id };
      return { t: 'call', id, method: o.method, params: o.params };
    case 'sub':
      if (typeof o.stream !== 'string' || !NAME.test(o.stream)) return { invalid: 'The subscription names no valid stream.', id };
      return { t: 'sub', id, stream: o.stream, params: o.params };
    case 'unsub':
      return { t: 'unsub', id };
    default:
      return { invalid: "The request's type must be 'call', 'sub' or 'unsub'.", id };
  }
}

/** Encodes a byte event as one binary frame: u32le subscription id, then the bytes. */
export function encodeBinaryEvent(id: number, bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + bytes.byteLength);
  new DataView(out.buffer).setUint32(0, id, true);
  out.set(bytes, 4);
  return out;
}

export function decodeBinaryEvent(frame: ArrayBuffer | Uint8Array): { id: number; bytes: Uint8Array } | null {
  const u8 = frame instanceof Uint8Array ? frame : new Uint8Array(frame);
  if (u8.byteLength < 4) return null;
  const id = new DataView(u8.buffer, u8.byteOffset, 4).getUint32(0, true);
  return { id, bytes: u8.subarray(4) };
}

/** Turns anything thrown by the backend into the error sent to the client: only a
 *  SpindleError-shaped error (code + message) keeps its sentence; anything else is internal. */
export function toWireError(err: unknown): WireError {
  const e = err as { code?: unknown; message?: unknown; name?: unknown } | null;
  if (e && e.name === 'SpindleError' && typeof e.code === 'string' && typeof e.message === 'string') {
    return { code: e.code, message: e.message };
  }
  return { code: 'INTERNAL', message: 'Spindle hit an internal error; the details are in its log.' };
}
