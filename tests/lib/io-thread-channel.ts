// The broadcast channel a test asks a test IOThread to crash on (test-io-thread.ts, io-thread-hooks.ts).
export const CRASH_CHANNEL = 'spindle-test-io-thread-crash';
