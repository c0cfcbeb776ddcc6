// One JSON file per VM (<dir>/<id>.json), written atomically and validated on load. A file that
// does not parse, fails the schema or has a version this Spindle does not know is reported and
// never written over: the user may have edited it, or a newer Spindle wrote it.
import { openSync, writeSync, fsyncSync, closeSync, renameSync, linkSync, unlinkSync, readdirSync, readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { type ConfigProblem } from '../../shared/api.js';
import { VmConfig, VM_CONFIG_VERSION, vmNamed } from '../../shared/model.js';
import { SpindleError, errnoOf } from '../../shared/errors.js';

const FILE_RE = /^([a-z0-9][a-z0-9-]*)\.json$/;
const MAX_ID = 32;

/** A file-name-safe id from free text: lowercase ASCII letters, digits and dashes, never empty. */
export function slugify(name: string): string {
  const slug = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, MAX_ID)
    .replace(/-+$/g, '');
  return slug || 'vm';
}

export type LoadResult = { ok: true; config: VmConfig } | { ok: false; problem: ConfigProblem };

/** Parses and validates one VM file's text; `file` names it in the reason. */
export function parseVmFile(file: string, text: string, expectedId?: string): LoadResult {
  const fail = (reason: string): LoadResult => ({ ok: false, problem: { file, reason } });
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return fail(`${file} is not valid JSON (${(err as Error).message}); it was left untouched.`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    return fail(`${file} does not hold a VM object; it was left untouched.`);
  const version = (raw as { version?: unknown }).version;
  if (version !== VM_CONFIG_VERSION) {
    return fail(
      `${file} has version ${JSON.stringify(version)}, and this Spindle reads version ${VM_CONFIG_VERSION}; it was left untouched.`,
    );
  }
  const parsed = VmConfig.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? issue.path.join('.') : 'the file';
    return fail(`${file} is not a valid VM file (${where}: ${issue.message}); it was left untouched.`);
  }
  if (expectedId !== undefined && parsed.data.id !== expectedId) {
    return fail(`${file} holds VM id '${parsed.data.id}', which does not match its file name; it was left untouched.`);
  }
  return { ok: true, config: parsed.data };
}

export class VmStore {
  constructor(readonly dir: string) {}

  private fileOf(id: string): string {
    if (!FILE_RE.test(`${id}.json`)) throw new SpindleError('INVALID_ARGUMENT', `'${id}' is not a valid VM id.`);
    return join(this.dir, `${id}.json`);
  }

  /**
   * The lock file held by the process running VM `id` (electron/host/vm/lock-file.ts). It sits with the
   * VM files, not in the runtime directory: two Spindle processes with different XDG_RUNTIME_DIRs
   * but the same VM files must still refuse to run one VM twice.
   */
  runLockPath(id: string, opts: { create?: boolean } = {}): string {
    this.fileOf(id); // refuses an id that is not one
    const dir = join(this.dir, '.locks');
    if (opts.create) mkdirSync(dir, { recursive: true, mode: 0o700 });
    return join(dir, `${id}.lock`);
  }

  /** Every VM file in the directory: the valid ones, and a problem for each other one. */
  loadAll(): { vms: VmConfig[]; problems: ConfigProblem[] } {
    const vms: VmConfig[] = [];
    const problems: ConfigProblem[] = [];
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return { vms, problems };
      throw new SpindleError('IO_ERROR', `Cannot read the VM directory ${this.dir}: ${(err as Error).message}.`, errnoOf(err));
    }
    for (const name of names.sort()) {
      const m = FILE_RE.exec(name);
      if (!m) continue; // temp files and anything else are not VM files
      const file = join(this.dir, name);
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        problems.push({ file, reason: `${file} cannot be read (${(err as Error).message}).` });
        continue;
      }
      const r = parseVmFile(file, text, m[1]);
      if (r.ok) vms.push(r.config);
      else problems.push(r.problem);
    }
    vms.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return { vms, problems };
  }

  /** An id for a new VM named `name` that no file in the directory uses (valid or not). */
  newId(name: string): string {
    const taken = new Set<string>();
    try {
      for (const n of readdirSync(this.dir)) {
        const m = FILE_RE.exec(n);
        if (m) taken.add(m[1]!);
      }
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') throw err;
    }
    const base = slugify(name);
    if (!taken.has(base)) return base;
    for (let i = 2; ; i++) {
      const suffix = `-${i}`;
      const id = base.slice(0, MAX_ID - suffix.length).replace(/-+$/, '') + suffix;
      if (!taken.has(id)) return id;
    }
  }

  /** Refuses (NAME_TAKEN) a name another VM (other than `exceptId`) has, ignoring case (shared/model.ts vmNameKey). */
  refuseTakenName(name: string, exceptId?: string): void {
    const other = vmNamed(this.loadAll().vms, name, exceptId);
    if (other) {
      const sameCase = other.name === name.trim();
      throw new SpindleError(
        'NAME_TAKEN',
        `There is already a VM named '${other.name}'${sameCase ? '' : ' (names are compared ignoring letter case)'}; choose another name.`,
      );
    }
  }

  /** Writes a new VM's file; fails with CONFLICT if a file with its id already exists (never overwrites), NAME_TAKEN if its name is taken. */
  create(config: VmConfig): void {
    this.refuseTakenName(config.name);
    this.write(VmConfig.parse(config), 'create');
  }

  /** Replaces an existing VM's file; refuses when the file on disk is no longer a valid VM file. */
  update(config: VmConfig): void {
    const file = this.fileOf(config.id);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new SpindleError('NOT_FOUND', `The file of VM '${config.name}' (${file}) is gone: ${(err as Error).message}.`, errnoOf(err));
    }
    const current = parseVmFile(file, text, config.id);
    if (!current.ok) throw new SpindleError('CONFIG_CORRUPT', current.problem.reason);
    if (current.config.name !== config.name) this.refuseTakenName(config.name, config.id);
    this.write(VmConfig.parse(config), 'replace');
  }

  delete(id: string): void {
    const file = this.fileOf(id);
    try {
      unlinkSync(file);
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') throw new SpindleError('IO_ERROR', `Cannot delete ${file}: ${(err as Error).message}.`, errnoOf(err));
    }
    fsyncDir(this.dir);
  }

  // temp file, fsync, rename (or link for no-overwrite create), fsync dir
  private write(config: VmConfig, how: 'create' | 'replace'): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = this.fileOf(config.id);
    const tmp = join(this.dir, `.${config.id}.json.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, JSON.stringify(config, null, 2) + '\n');
      fsyncSync(fd);
    } catch (err) {
      closeSync(fd);
      unlinkSync(tmp);
      throw new SpindleError('IO_ERROR', `Cannot write ${tmp}: ${(err as Error).message}.`, errnoOf(err));
    }
    closeSync(fd);
    try {
      if (how === 'create') {
        linkSync(tmp, file); // fails with EEXIST instead of replacing
        unlinkSync(tmp);
      } else {
        renameSync(tmp, file);
      }
    } catch (err) {
      try {
        unlinkSync(tmp);
      } catch {
        /* already gone */
      }
      if (errnoOf(err) === 'EEXIST') throw new SpindleError('CONFLICT', `A VM file named ${file} already exists.`, 'EEXIST');
      throw new SpindleError('IO_ERROR', `Cannot save ${file}: ${(err as Error).message}.`, errnoOf(err));
    }
    fsyncDir(this.dir);
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
