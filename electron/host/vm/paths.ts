// Where Spindle keeps VM files (config) and sockets (runtime). Runtime sockets live in a directory
// only this user can enter (0700), so no other local user can connect to a disk or QMP socket.
import { mkdirSync, lstatSync, chmodSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, isAbsolute } from 'node:path';
import { SpindleError } from '../../shared/errors.js';

/** $XDG_CONFIG_HOME/spindle (default ~/.config/spindle). */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.config'), 'spindle');
}

export function vmConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), 'vms');
}

/** $XDG_DATA_HOME/spindle (default ~/.local/share/spindle): scratch images. */
export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_DATA_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.local', 'share'), 'spindle');
}

/** $XDG_RUNTIME_DIR/spindle, else /tmp/spindle-$UID; created 0700 and checked to be ours. */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_RUNTIME_DIR;
  const dir = xdg && isAbsolute(xdg) ? join(xdg, 'spindle') : `/tmp/spindle-${process.getuid?.() ?? 0}`;
  ensurePrivateDir(dir);
  return dir;
}

/** Creates `dir` 0700 if needed and refuses one that is a symlink, not ours, or open to others. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) {
    throw new SpindleError(
      'PERMISSION_DENIED',
      `The runtime directory ${dir} is not a directory owned by you; remove it or set XDG_RUNTIME_DIR.`,
    );
  }
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
}

/** Sockets of one running VM: <runtime>/<vmId>/ (0700). Unix socket paths must stay under 108 bytes. */
export function vmRuntimeDir(vmId: string, env: NodeJS.ProcessEnv = process.env): string {
  const dir = join(runtimeDir(env), vmId);
  ensurePrivateDir(dir);
  if (Buffer.byteLength(join(dir, 'd000.sock')) > 107) {
    throw new SpindleError(
      'INVALID_ARGUMENT',
      `The runtime directory ${dir} is too long for unix sockets (108 bytes); set XDG_RUNTIME_DIR to a shorter path.`,
    );
  }
  return dir;
}
