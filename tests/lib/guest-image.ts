// Builds the test guest: Debian's installed kernel plus an initramfs holding busybox,
// the virtio/ext4 modules, e2fsprogs and fio with their shared libraries, and an init that runs a
// command agent on the second serial port. Cached under tests/guest/.cache/<hash of inputs>, so
// a rebuild happens only when the kernel, a module, a binary, a library or this builder changes.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

/** Bump when the layout or the scripts below change in a way the input hash would not see. */
const BUILDER_VERSION = 5;

/** Modules the guest needs, by name; their dependencies come from modules.dep. */
export const GUEST_MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_legacy_dev',
  'virtio_pci_modern_dev',
  'virtio_pci',
  'virtio_blk',
  // ext4 (metadata_csum, jbd2) asks the crypto API for crc32c; with no modprobe in the guest it must be loaded up front.
  'crc32c_generic',
  'ext4',
  // The machine tests (tests/guest/machine-*.test.ts): the ACPI power button as an input device
  // for busybox acpid, the network card for port forwards, CD-ROM drives (AHCI on q35, IDE on pc).
  'button',
  'evdev',
  'virtio_net',
  'ahci',
  'ata_piix',
  'sr_mod',
  'isofs',
];

/**
 * fio links every optional I/O engine's library directly (gluster, ceph, RDMA, NBD, PMEM: 80 MB
 * with their dependencies) and is linked with BIND_NOW, so they cannot simply be left out. The
 * guest gets stub libraries instead: same soname, same symbol versions, every function aborts.
 * The tests only use the libaio and sync engines; fio's startup never calls into the stubs.
 */
const FIO_STUBBED_LIBS = /^lib(gfapi|nbd|ibverbs|rdmacm|rados|rbd|pmemblk|pmem)\.so/;

/**
 * Dynamically linked host programs copied into the guest, with the names they answer to. Call
 * them by absolute path in guest commands: Debian's busybox shell runs its own applet of the same
 * name (blkdiscard, mke2fs) before looking at PATH.
 */
const GUEST_PROGRAMS: { path: string; links: string[]; stub?: RegExp }[] = [
  { path: '/usr/sbin/mke2fs', links: ['/usr/sbin/mkfs.ext4'] },
  { path: '/usr/sbin/e2fsck', links: ['/usr/sbin/fsck.ext4'] },
  { path: '/usr/bin/fio', links: [], stub: FIO_STUBBED_LIBS },
  // util-linux's, for -z (BLKZEROOUT → virtio-blk WRITE_ZEROES), which busybox's lacks.
  { path: '/usr/sbin/blkdiscard', links: [] },
];

const BUSYBOX = '/bin/busybox';

/** Marker lines of the serial command protocol (host side lives in tests/lib/qemu.ts). */
export const AGENT_READY = 'SPINDLE-AGENT-READY';
export const AGENT_END_PREFIX = '__SPINDLE_END_';

// PID 1. stdio is redirected to the console only once devtmpfs is mounted, so the image needs no
// device nodes (and the builder no root). ttyS0 is the kernel console (a log for humans);
// ttyS1 carries the command protocol, so kernel messages never interleave with command output
// (a VM with only ttyS0 passes spindle.agent=ttyS0 and a quiet kernel log level instead).
const INIT_SCRIPT = `#!/bin/sh
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
for m in $(cat /etc/spindle/modules); do
  insmod "/lib/modules/$m" || echo "spindle-guest: insmod $m failed"
done
# The agent's port: ttyS1, or spindle.agent=ttyS0 for a VM with one serial port (Spindle's VMs).
agent=ttyS1
for arg in $(cat /proc/cmdline); do
  case "$arg" in spindle.agent=*) agent="\${arg#spindle.agent=}" ;; esac
done
echo "spindle-guest: modules loaded, agent on $agent"
# spindle.acpid=1: busybox acpid powers the guest off when the ACPI power button is pressed
# (/etc/acpi/PWRF/00000080, busybox's name for that event); without it the button does nothing.
# Its log and pid file go to /run: the image has no /var.
case " $(cat /proc/cmdline) " in *" spindle.acpid=1 "*) acpid -l /run/acpid.log -p /run/acpid.pid && echo "spindle-guest: acpid running" ;; esac
stty -F /dev/$agent raw -echo
while true; do
  /bin/sh /etc/spindle/agent.sh </dev/$agent >/dev/$agent 2>&1
  echo "spindle-guest: agent exited with $?, restarting"
done
`;

// One request per line: "<token> <base64 of a shell script>". The script runs with stdin from
// /dev/null (so it cannot eat the next request); its output streams back, followed by
// "\\n${AGENT_END_PREFIX}<token>_<exit code>__\\n".
// What acpid runs for the power button: say so on the console, flush, and power off (ACPI S5).
const POWER_BUTTON_SCRIPT = `#!/bin/sh
echo "spindle-guest: power button pressed, powering off" > /dev/console
sync
poweroff -f
`;

const AGENT_SCRIPT = `echo ${AGENT_READY}
while read -r token b64; do
  [ -n "$token" ] || continue
  echo "$b64" | base64 -d > /tmp/.agent-cmd
  sh /tmp/.agent-cmd </dev/null 2>&1
  printf '\\n${AGENT_END_PREFIX}%s_%d__\\n' "$token" "$?"
done
`;

export interface GuestImage {
  kernel: string;
  initrd: string;
  kernelVersion: string;
}

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** dist/tests/lib/x.js and tests/lib/x.ts both sit two levels below the tree they belong to. */
const defaultCacheDir = (): string => {
  const here = dirname(fileURLToPath(import.meta.url));
  const root = basename(resolve(here, '..', '..')) === 'dist' ? repoRoot : resolve(here, '..', '..');
  return join(root, 'tests', 'guest', '.cache');
};

const versionCompare = (a: string, b: string): number => a.localeCompare(b, 'en', { numeric: true });

/** The newest /boot/vmlinuz-* whose modules are installed (or SPINDLE_GUEST_KERNEL_VERSION). */
export function findGuestKernel(): { kernel: string; version: string; moduleDir: string } {
  const wanted = process.env.SPINDLE_GUEST_KERNEL_VERSION;
  const versions = readdirSync('/boot')
    .filter((n) => n.startsWith('vmlinuz-'))
    .map((n) => n.slice('vmlinuz-'.length))
    .filter((v) => existsSync(join('/lib/modules', v, 'modules.dep')))
    .filter((v) => !wanted || v === wanted)
    .sort(versionCompare);
  const version = versions.at(-1);
  if (!version) {
    throw new Error(
      `no usable guest kernel: need /boot/vmlinuz-VERSION with /lib/modules/VERSION/modules.dep${wanted ? ` for ${wanted}` : ''} (apt-get install linux-image-amd64)`,
    );
  }
  return { kernel: join('/boot', `vmlinuz-${version}`), version, moduleDir: join('/lib/modules', version) };
}

const moduleName = (file: string): string =>
  basename(file)
    .replace(/\.ko(\.(xz|zst|gz))?$/, '')
    .replace(/-/g, '_');

/** `wanted` and everything they depend on, dependencies first, as paths relative to moduleDir. */
export function resolveModules(moduleDir: string, wanted: string[]): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of readFileSync(join(moduleDir, 'modules.dep'), 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const mod = line.slice(0, colon).trim();
    deps.set(
      mod,
      line
        .slice(colon + 1)
        .trim()
        .split(/\s+/)
        .filter(Boolean),
    );
    byName.set(moduleName(mod), mod);
  }
  const builtin = new Set(
    existsSync(join(moduleDir, 'modules.builtin'))
      ? readFileSync(join(moduleDir, 'modules.builtin'), 'utf8').split('\n').filter(Boolean).map(moduleName)
      : [],
  );
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (mod: string): void => {
    if (state.get(mod) === 'done') return;
    if (state.get(mod) === 'visiting') throw new Error(`module dependency cycle at ${mod}`);
    state.set(mod, 'visiting');
    for (const d of deps.get(mod) ?? []) visit(d);
    state.set(mod, 'done');
    order.push(mod);
  };
  for (const name of wanted) {
    const mod = byName.get(name.replace(/-/g, '_'));
    if (mod) visit(mod);
    else if (!builtin.has(name.replace(/-/g, '_')))
      throw new Error(`kernel module ${name} is neither in ${moduleDir}/modules.dep nor built in`);
  }
  return order;
}

/** Every shared library a dynamically linked program loads, plus its loader (absolute paths). */
export function sharedLibraries(program: string): string[] {
  const out = execFileSync('ldd', [program], { encoding: 'utf8' });
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const arrow = /=>\s+(\/\S+)/.exec(line);
    const loader = /^\s*(\/\S+)\s+\(0x/.exec(line);
    if (arrow) libs.push(arrow[1]!);
    else if (loader) libs.push(loader[1]!);
    else if (/not found/.test(line)) throw new Error(`${program} needs a library that is not installed: ${line.trim()}`);
  }
  return libs;
}

interface StubLib {
  soname: string;
  /** version node → functions */ versions: Record<string, string[]>;
  unversioned: string[];
}

/** What fio needs from each stubbed library: its functions, grouped by the symbol versions it asks for. */
function planFioStubs(fio: string): { stubs: StubLib[]; sources: string[] } {
  const needed = [...execFileSync('readelf', ['-d', fio], { encoding: 'utf8' }).matchAll(/\(NEEDED\)\s+Shared library: \[(.+?)\]/g)].map(
    (m) => m[1]!,
  );
  const stubbed = needed.filter((n) => FIO_STUBBED_LIBS.test(n));
  // Version names → the library that defines them (readelf -V: "File: libgfapi.so.0" then "Name: GFAPI_6.0").
  const versionOwner = new Map<string, string>();
  let file = '';
  for (const line of execFileSync('readelf', ['-V', fio], { encoding: 'utf8' }).split('\n')) {
    const f = /File: (\S+)/.exec(line);
    if (f) file = f[1]!;
    const n = /Name: (\S+)/.exec(line);
    if (n && file) versionOwner.set(n[1]!, file);
  }
  const stubs = new Map<string, StubLib>(stubbed.map((soname) => [soname, { soname, versions: {}, unversioned: [] }]));
  const unversioned: string[] = [];
  for (const line of execFileSync('objdump', ['-T', fio], { encoding: 'utf8' }).split('\n')) {
    const m = /\*UND\*\s+\S+\s+(\(([^)]+)\)|Base)\s+(\S+)$/.exec(line.trim());
    if (!m) continue;
    const [, , version, sym] = m;
    if (!version) {
      unversioned.push(sym!);
      continue;
    }
    const stub = stubs.get(versionOwner.get(version) ?? '');
    if (!stub) continue;
    (stub.versions[version] ??= []).push(sym!);
  }
  // Unversioned references: whichever stubbed library really exports them (librados, librbd).
  const sources: string[] = [];
  for (const stub of stubs.values()) {
    const real = sharedLibraries(fio).find((l) => basename(l) === stub.soname);
    if (!real) throw new Error(`fio needs ${stub.soname} but ldd does not find it`);
    sources.push(real);
    const exported = new Set(
      execFileSync('nm', ['-D', '--defined-only', real], { encoding: 'utf8' })
        .split('\n')
        .map((l) => l.trim().split(/\s+/).at(-1)!.replace(/@.*$/, '')),
    );
    stub.unversioned = unversioned.filter((sym) => exported.has(sym));
  }
  return { stubs: [...stubs.values()], sources };
}

/** Compiles the stubs into `dir` (needs gcc, from build-essential). */
function buildStubs(stubs: StubLib[], dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const stub of stubs) {
    const fns = Object.values(stub.versions).flat().concat(stub.unversioned);
    const c = `#include <stdlib.h>\n${fns.map((f) => `void ${f}(void) { abort(); }`).join('\n')}\n`;
    const nodes = Object.entries(stub.versions);
    if (!nodes.length) nodes.push(['SPINDLE_STUB', []]);
    nodes[0]![1] = nodes[0]![1].concat(stub.unversioned);
    const script = nodes.map(([v, syms]) => `${v} { global: ${syms.map((x) => `${x};`).join(' ')} };`).join('\n') + '\n';
    const base = join(dir, stub.soname);
    writeFileSync(`${base}.c`, c);
    writeFileSync(`${base}.map`, script);
    execFileSync(
      'gcc',
      ['-shared', '-fPIC', '-O0', '-o', base, `-Wl,-soname,${stub.soname}`, `-Wl,--version-script=${base}.map`, `${base}.c`],
      { stdio: 'pipe' },
    );
    rmSync(`${base}.c`);
    rmSync(`${base}.map`);
  }
}

interface Plan {
  kernel: string;
  version: string;
  modules: { src: string; dest: string }[];
  files: { src: string; dest: string }[];
  links: { target: string; dest: string }[];
  busyboxApplets: string[];
  /** Stub libraries compiled into /lib/x86_64-linux-gnu, and the real ones they stand for (hash inputs). */
  stubs: StubLib[];
  stubSources: string[];
}

function makePlan(): Plan {
  const { kernel, version, moduleDir } = findGuestKernel();
  const modules = resolveModules(moduleDir, GUEST_MODULES).map((rel) => ({
    src: join(moduleDir, rel),
    dest: `/lib/modules/${moduleName(rel)}.ko`,
  }));
  const files = new Map<string, string>();
  const links: Plan['links'] = [];
  const stubs: StubLib[] = [];
  const stubSources: string[] = [];
  for (const prog of GUEST_PROGRAMS) {
    if (!existsSync(prog.path)) throw new Error(`${prog.path} is missing on the host (apt-get install e2fsprogs fio)`);
    files.set(prog.path, prog.path);
    const libs = sharedLibraries(prog.path);
    if (prog.stub) {
      const planned = planFioStubs(prog.path);
      stubs.push(...planned.stubs);
      stubSources.push(...planned.sources);
      // Only the libraries the program needs directly and does not stub, with their own closures.
      const direct = execFileSync('readelf', ['-d', prog.path], { encoding: 'utf8' });
      const kept = libs.filter((l) => direct.includes(`[${basename(l)}]`) && !prog.stub!.test(basename(l)));
      for (const lib of kept) for (const dep of [lib, ...sharedLibraries(lib)]) files.set(dep, dep);
      for (const lib of libs) if (/ld-linux/.test(lib)) files.set(lib, lib);
    } else {
      for (const lib of libs) files.set(lib, lib);
    }
    for (const l of prog.links) links.push({ target: basename(prog.path), dest: l });
  }
  if (existsSync('/etc/mke2fs.conf')) files.set('/etc/mke2fs.conf', '/etc/mke2fs.conf');
  const busyboxApplets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((a) => a && a !== 'busybox');
  return { kernel, version, modules, files: [...files].map(([src, dest]) => ({ src, dest })), links, busyboxApplets, stubs, stubSources };
}

function planHash(plan: Plan): string {
  const h = createHash('sha256');
  h.update(
    JSON.stringify({
      BUILDER_VERSION,
      INIT_SCRIPT,
      AGENT_SCRIPT,
      POWER_BUTTON_SCRIPT,
      links: plan.links,
      applets: plan.busyboxApplets,
      stubs: plan.stubs,
    }),
  );
  for (const src of [plan.kernel, BUSYBOX, ...plan.modules.map((m) => m.src), ...plan.files.map((f) => f.src), ...plan.stubSources]) {
    const st = statSync(src);
    h.update(`${src}\0${st.size}\0${st.mtimeMs}\0`);
  }
  return h.digest('hex').slice(0, 16);
}

/** Copies a module, decompressing .ko.xz / .ko.zst / .ko.gz with the host's tools. */
function copyModule(src: string, dest: string): void {
  const tool = src.endsWith('.xz') ? 'xz' : src.endsWith('.zst') ? 'zstd' : src.endsWith('.gz') ? 'gzip' : null;
  if (!tool) copyFileSync(src, dest);
  else writeFileSync(dest, execFileSync(tool, ['-dc', src], { maxBuffer: 256 << 20 }));
}

function stage(plan: Plan, root: string): void {
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'tmp', 'run', 'mnt', 'etc/spindle', 'lib/modules']) {
    mkdirSync(join(root, d), { recursive: true });
  }
  copyFileSync(BUSYBOX, join(root, 'bin/busybox'));
  chmodSync(join(root, 'bin/busybox'), 0o755);
  for (const applet of plan.busyboxApplets) {
    const dest = join(root, 'bin', applet);
    if (!existsSync(dest)) symlinkSync('busybox', dest);
  }
  for (const f of plan.files) {
    mkdirSync(dirname(join(root, f.dest)), { recursive: true });
    copyFileSync(f.src, join(root, f.dest)); // follows symlinks: the guest gets the real file under the name ldd used
  }
  for (const l of plan.links) symlinkSync(l.target, join(root, l.dest));
  if (plan.stubs.length) {
    const libDir = join(root, 'lib/x86_64-linux-gnu');
    buildStubs(plan.stubs, libDir);
    // Prove on the host that fio links against the stubs (BIND_NOW resolves every symbol at start).
    const check = spawnSync('/usr/bin/fio', ['--version'], { env: { ...process.env, LD_LIBRARY_PATH: libDir }, encoding: 'utf8' });
    if (check.status !== 0) throw new Error(`fio does not start with the stub libraries: ${check.stderr}`);
  }
  for (const m of plan.modules) copyModule(m.src, join(root, m.dest));
  writeFileSync(join(root, 'etc/spindle/modules'), plan.modules.map((m) => basename(m.dest)).join('\n') + '\n');
  writeFileSync(join(root, 'etc/spindle/agent.sh'), AGENT_SCRIPT);
  mkdirSync(join(root, 'etc/acpi/PWRF'), { recursive: true });
  writeFileSync(join(root, 'etc/acpi/PWRF/00000080'), POWER_BUTTON_SCRIPT, { mode: 0o755 });
  symlinkSync('/proc/mounts', join(root, 'etc/mtab'));
  writeFileSync(join(root, 'init'), INIT_SCRIPT, { mode: 0o755 });
}

/** Packs `root` as a gzip'd newc cpio owned by root (the `cpio` tool archives, Node compresses). */
async function packInitramfs(root: string, out: string): Promise<void> {
  const list = execFileSync('find', ['.', '-mindepth', '1'], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  const cpio = spawn('cpio', ['--quiet', '-o', '-H', 'newc', '-R', '0:0'], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  cpio.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((res) => cpio.on('close', res));
  cpio.stdin.end(list);
  await pipeline(cpio.stdout, createGzip({ level: 1 }), createWriteStream(out));
  const code = await exited;
  if (code !== 0) throw new Error(`cpio failed (${code}): ${stderr.trim()}`);
}

/**
 * Returns the guest kernel and initramfs, building the initramfs if its inputs changed.
 * Safe when several test processes call it at once: each builds in its own directory and
 * the finished one is renamed into place.
 */
export async function buildGuestImage(opts: { cacheDir?: string } = {}): Promise<GuestImage> {
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const plan = makePlan();
  const key = planHash(plan);
  const dir = join(cacheDir, `guest-${key}`);
  const initrd = join(dir, 'initramfs.cpio.gz');
  if (!existsSync(initrd)) {
    mkdirSync(cacheDir, { recursive: true });
    const work = join(cacheDir, `.build-${key}-${process.pid}`);
    rmSync(work, { recursive: true, force: true });
    try {
      stage(plan, join(work, 'root'));
      await packInitramfs(join(work, 'root'), join(work, 'initramfs.cpio.gz'));
      rmSync(join(work, 'root'), { recursive: true, force: true });
      writeFileSync(join(work, 'inputs.json'), JSON.stringify(plan, null, 1));
      try {
        renameSync(work, dir);
      } catch (err) {
        if (!existsSync(initrd)) throw err; // another process won the race with an identical build
      }
      for (const old of readdirSync(cacheDir)) {
        if (old.startsWith('guest-') && old !== basename(dir)) rmSync(join(cacheDir, old), { recursive: true, force: true });
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  return { kernel: plan.kernel, initrd, kernelVersion: plan.version };
}
