// "Start Spindle at login": an XDG autostart entry ($XDG_CONFIG_HOME/autostart/spindle.desktop,
// the Desktop Application Autostart Specification) written when the user asks and removed when
// they ask; nothing is written otherwise. Which command it runs is the host's to say (the app
// starts itself hidden in the tray; serve mode starts `spindle serve`).
import { mkdirSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { SpindleError, errnoOf } from '../../shared/errors.js';

export interface LoginAutostart {
  enabled: boolean;
  /** The entry's file (whether or not it exists). */
  path: string;
  /** The command it runs, when enabled. */
  command?: string;
}

/** $XDG_CONFIG_HOME/autostart/spindle.desktop (default ~/.config/autostart). */
export function autostartPath(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.config'), 'autostart', 'spindle.desktop');
}

/** One argument quoted for a desktop entry's Exec key (the spec's quoting rules, §"The Exec key"). */
export function quoteExecArg(arg: string): string {
  if (!arg.length) return '""';
  if (!/[\s"'\\><~|&;$*?#()`=%]/.test(arg)) return arg;
  // Inside double quotes: ", `, $ and \ are escaped with a backslash; then the entry's own escaping doubles each backslash.
  const quoted = `"${arg.replace(/(["`$\\])/g, '\\$1')}"`;
  return quoted.replace(/\\/g, '\\\\').replace(/%/g, '%%');
}

/** The entry's text for `command` (argv, absolute program first). */
export function desktopEntry(command: readonly string[]): string {
  if (!command.length || !isAbsolute(command[0]!))
    throw new SpindleError('INVALID_ARGUMENT', 'The autostart command must start with an absolute program path.');
  return [
    '[Desktop Entry]',
    'Type=Application',
    'Name=Spindle',
    'Comment=Start Spindle at login (keeps its VMs in the tray)',
    `Exec=${command.map(quoteExecArg).join(' ')}`,
    'Terminal=false',
    'X-GNOME-Autostart-enabled=true',
    '',
  ].join('\n');
}

export function loginAutostartStatus(env: NodeJS.ProcessEnv = process.env): LoginAutostart {
  const path = autostartPath(env);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return { enabled: false, path };
    throw new SpindleError('IO_ERROR', `Cannot read ${path}: ${(err as Error).message}.`, errnoOf(err));
  }
  // Hidden=true is how a user (or a desktop's settings) turns an entry off without deleting it.
  const hidden = /^Hidden\s*=\s*true\s*$/m.test(text) || /^X-GNOME-Autostart-enabled\s*=\s*false\s*$/m.test(text);
  const exec = /^Exec\s*=\s*(.*)$/m.exec(text)?.[1];
  return { enabled: !hidden, path, ...(exec && !hidden ? { command: exec } : {}) };
}

/** Writes (enabled) or removes (not) the entry; answers with the new status. */
export function setLoginAutostart(enabled: boolean, command: readonly string[], env: NodeJS.ProcessEnv = process.env): LoginAutostart {
  const path = autostartPath(env);
  try {
    if (enabled) {
      const text = desktopEntry(command);
      mkdirSync(join(path, '..'), { recursive: true, mode: 0o755 });
      const tmp = `${path}.tmp-${process.pid}`;
      writeFileSync(tmp, text, { mode: 0o644 });
      renameSync(tmp, path);
    } else {
      rmSync(path, { force: true });
    }
  } catch (err) {
    if (err instanceof SpindleError) throw err;
    throw new SpindleError('IO_ERROR', `Cannot ${enabled ? 'write' : 'remove'} ${path}: ${(err as Error).message}.`, errnoOf(err));
  }
  return loginAutostartStatus(env);
}
