// Why an open was denied (EACCES/EPERM), said from the file's mode and owner: a file that is
// read-only for this user is said to be read-only, and a group is named only when joining it
// would actually grant the access asked for.
import { readFileSync, statSync, type Stats } from 'node:fs';
import { SpindleError } from '../../shared/errors.js';
import { blockName, groupName, majMin } from './sysfs.js';

const READ = 4;
const WRITE = 2;

function userName(uid: number): string {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const [name, , id] = line.split(':');
      if (name && Number(id) === uid) return name;
    }
  } catch {
    /* no passwd file */
  }
  return String(uid);
}

/** The kernel's read-only flag of a block device (blockdev --setro, a write-protected card). */
function deviceReadOnly(st: Stats): boolean {
  if (!st.isBlockDevice()) return false;
  const name = blockName(majMin(st.rdev));
  try {
    return name !== null && readFileSync(`/sys/class/block/${name}/ro`, 'utf8').trim() === '1';
  } catch {
    return false;
  }
}

type Refusal = ['READ_ONLY' | 'PERMISSION_DENIED', string];
const readOnly = (s: string): Refusal => ['READ_ONLY', s];
const denied = (s: string): Refusal => ['PERMISSION_DENIED', s];

/** Why an open of `path` for reading (or reading and writing when `write`) was denied. */
function explain(path: string, write: boolean, st?: Stats | null): Refusal {
  if (st === undefined) {
    try {
      st = statSync(path);
    } catch {
      st = null;
    }
  }
  const how = write ? 'reading and writing' : 'reading';
  if (!st) return denied(`No permission to open ${path} for ${how}: a directory on its path is not searchable by you.`);
  if (write && deviceReadOnly(st)) return readOnly(`${path} is a read-only device: attach it read-only.`);
  const mode = `mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}`;
  const owner = `owner ${userName(st.uid)}, group ${groupName(st.gid)}`;
  const uid = process.getuid?.() ?? -1;
  if (uid === 0)
    return denied(
      `Permission denied opening ${path} for ${how} even as root (${mode}): a security policy, the device cgroup or an immutable attribute (lsattr) forbids it.`,
    );
  const need = READ | (write ? WRITE : 0);
  const bits = { owner: (st.mode >> 6) & 7, group: (st.mode >> 3) & 7, other: st.mode & 7 };
  const inGroup = st.gid === process.getgid?.() || (process.getgroups?.() ?? []).includes(st.gid);
  const mine = st.uid === uid ? bits.owner : inGroup ? bits.group : bits.other;
  if ((mine & need) === need) {
    return denied(
      `Permission denied opening ${path} for ${how} although its ${mode} allows it: an ACL, a directory on its path or a security policy forbids it.`,
    );
  }
  if (write && mine & READ && !(mine & WRITE)) {
    if (st.uid !== uid && !inGroup && (bits.group & need) === need) {
      return readOnly(
        `${path} is read-only for you (${mode}, ${owner}): members of group '${groupName(st.gid)}' may write it. Open it read-only, or add your user to that group (sudo usermod -aG ${groupName(st.gid)} $USER) and log in again.`,
      );
    }
    const fix = st.uid === uid ? `make it writable (chmod u+w ${path})` : `ask ${userName(st.uid)} to let you write it`;
    const forWhom = st.mode & 0o222 ? ' for you' : '';
    return readOnly(`${path} is read-only${forWhom} (${mode}, ${owner}): open it read-only, or ${fix}.`);
  }
  const group = groupName(st.gid);
  const join = `add your user to that group (sudo usermod -aG ${group} $USER) and log in again`;
  if (st.uid !== uid && !inGroup && (bits.group & need) === need) {
    return denied(`Permission denied opening ${path}. Members of group '${group}' may open it (${mode}, ${owner}): ${join}.`);
  }
  if (st.uid !== uid && !inGroup && write && bits.group & READ) {
    return denied(
      `Permission denied opening ${path}. Members of group '${group}' may open it read-only (${mode}, ${owner}): ${join} to use it read-only, or ask ${userName(st.uid)} for write access.`,
    );
  }
  const owners = st.uid === 0 ? 'only root' : `only ${userName(st.uid)} or root`;
  return denied(
    `No permission to open ${path} for ${how} (${mode}, ${owner}): ${st.uid === uid ? `make it readable (chmod u+r${write ? 'w' : ''} ${path})` : `${owners} may change that`}.`,
  );
}

/** A READ_ONLY (the file or device is read-only to this user) or PERMISSION_DENIED error for a denied open. */
export function permissionDenied(path: string, err: unknown, write: boolean, st?: Stats | null): SpindleError {
  const [code, sentence] = explain(path, write, st);
  return new SpindleError(code, sentence, (err as { code?: string })?.code, { cause: err });
}
