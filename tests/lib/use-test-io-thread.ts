// Preloaded (`node --import`) into a `spindle export` a test starts: its IOThreads run from the
// test entry (test-io-thread.ts), e.g. to hold completions (SPINDLE_TEST_COMPLETION_DELAY_MS).
import { useTestIoThread } from './io-thread-hooks.js';

useTestIoThread();
