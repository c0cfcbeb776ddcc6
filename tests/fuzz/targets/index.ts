// Every property target, for `npm run fuzz` (scripts/fuzz.mjs). The test suites run each one
// bounded from their own test files.
import type { FuzzTarget } from '../target.js';
import { virtioTargets } from './virtio.js';
import { codecTargets } from './vhost-user-codec.js';
import { qmpTargets } from './qmp.js';
import { apiRouterTarget } from './api-router.js';
import { serverStreams } from './vhost-user-server.js';
import { localSocketTarget } from './local-socket.js';
import { apiSessionTarget } from './api-session.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- one list of targets with different contexts
export const targets: FuzzTarget<any>[] = [
  ...virtioTargets,
  ...codecTargets,
  ...qmpTargets,
  apiRouterTarget,
  apiSessionTarget,
  localSocketTarget,
  serverStreams,
];
