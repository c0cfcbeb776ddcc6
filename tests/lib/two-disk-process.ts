// A process that serves two disks as the app does (one DiskServer IOThread each), for tests about
// what a frontend can do to the process itself: `node two-disk-process.js DIR` serves DIR/a.img on
// DIR/a.sock and DIR/b.img on DIR/b.sock, prints `ready`, then one line per disk event
// (`a {json}`), and stops both disks when stdin closes or on SIGTERM.
// spawnTwoDiskProcess() starts it from a test and watches how it ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { DiskServer } from '../../electron/host/disks/disk-server.js';
import { killOnExit, stopChild } from './proc.js';

export interface TwoDiskProcess {
  child: ChildProcess;
  sockets: { a: string; b: string };
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** How it ended ('SIGBUS', 'exit code 1'), or null while it runs. */
  ended(): string | null;
  /** Resolves once its output matches `what`; rejects when it ends first or after `timeoutMs`. */
  waitFor(what: RegExp, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function spawnTwoDiskProcess(dir: string): Promise<TwoDiskProcess> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), dir], { stdio: ['pipe', 'pipe', 'pipe'] });
  killOnExit(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const ended = (): string | null => (child.signalCode ? child.signalCode : child.exitCode !== null ? `exit code ${child.exitCode}` : null);
  const waitFor = async (what: RegExp, timeoutMs = 20_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!what.test(out)) {
      if (ended()) throw new Error(`the disk process ended (${ended()}) before printing ${what}:\n${out}`);
      if (Date.now() > deadline) throw new Error(`the disk process did not print ${what} within ${timeoutMs} ms:\n${out}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  await waitFor(/^ready$/m);
  return {
    child,
    sockets: { a: join(dir, 'a.sock'), b: join(dir, 'b.sock') },
    output: () => out,
    ended,
    waitFor,
    stop: async () => {
      child.stdin!.end();
      await stopChild(child, 20_000);
    },
  };
}

// Run as a script: serve the two disks.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2]!;
  const servers = await Promise.all(
    ['a', 'b'].map(async (name) => {
      const s = await DiskServer.start({
        path: join(dir, `${name}.img`),
        socketPath: join(dir, `${name}.sock`),
        aio: 'threads',
        cache: 'writeback',
        nowait: 'off',
        readOnly: false,
        queues: 1,
        serial: name,
      });
      s.on('event', (e) => console.log(`${name} ${JSON.stringify(e)}`));
      return s;
    }),
  );
  console.log('ready');
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.stop()));
    process.exit(0);
  };
  process.stdin.on('end', () => void stop());
  process.stdin.resume();
  process.once('SIGTERM', () => void stop());
}
