// host.devices, advisor.* and scratch.get through the API router, on real files in a temp dir and
// the machine's real block devices (lsblk); results are checked against the contract's schemas.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { writeFileSync, truncateSync, statSync, readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createBackend } from '../../electron/api/backend.js';
import { methods, type FileAdvice, type HostDevice, type ScratchDisk } from '../../electron/shared/api.js';
import { toApiHostDevices } from '../../electron/api/advisor-api.js';
import type { HostDevice as BlockHostDevice } from '../../electron/dataplane/block/host-devices.js';
import { SCRATCH_SIZE_BYTES } from '../../electron/host/vm/scratch.js';
import { SpindleError } from '../../electron/shared/errors.js';
import { apiSetup, rejectsWith } from '../lib/api.js';

const setup = () => apiSetup('spindle-api-advisor-');

/** Calls through the router and checks the answer against the method's result schema. */
async function call<M extends keyof typeof methods>(router: { call(m: string, p: unknown): Promise<unknown> }, m: M, params: unknown) {
  const r = await router.call(m, params);
  return methods[m].result.parse(r) as ReturnType<(typeof methods)[M]['result']['parse']>;
}

test('advisor.createImage and advisor.inspect: sparse image, threads + writeback, not safe for native', async () => {
  const s = setup();
  try {
    const path = join(s.dir, 'new.img');
    const made = (await call(s.router, 'advisor.createImage', { path, sizeBytes: 8 << 20, preallocate: false })) as FileAdvice;
    assert.equal(statSync(path).size, 8 << 20);
    assert.equal(made.kind, 'file');
    assert.equal(made.sparse, true);
    assert.equal(made.safeForNative, false);
    assert.equal(made.holeBytes, 8 << 20);
    assert.deepEqual(made.recommended, { aio: 'threads', cache: 'writeback', nowait: 'off' });
    assert.ok(
      made.notes.some((n) => /sparse/.test(n) && /preallocat/.test(n)),
      made.notes.join('\n'),
    );
    assert.equal(made.inUse, false);
    assert.equal(made.probe, undefined);
    const again = (await call(s.router, 'advisor.inspect', { path })) as FileAdvice;
    assert.deepEqual(again, made);
  } finally {
    await s.cleanup();
  }
});

test('advisor.createImage preallocated, and advisor.preallocate fills a sparse file in place', async () => {
  const s = setup();
  try {
    const pre = (await call(s.router, 'advisor.createImage', {
      path: join(s.dir, 'pre.img'),
      sizeBytes: 4 << 20,
      preallocate: true,
    })) as FileAdvice;
    assert.equal(pre.sparse, false);
    assert.equal(pre.safeForNative, true);

    const path = join(s.dir, 'data.img');
    writeFileSync(path, Buffer.alloc(4096, 0x5a));
    truncateSync(path, 4 << 20);
    const before = (await call(s.router, 'advisor.inspect', { path })) as FileAdvice;
    assert.equal(before.sparse, true);
    const after = (await call(s.router, 'advisor.preallocate', { path })) as FileAdvice;
    assert.equal(after.sparse, false);
    assert.equal(after.safeForNative, true);
    assert.equal(after.sizeBytes, 4 << 20, 'size unchanged');
    assert.ok((after.unwrittenBytes ?? 0) > 0, 'holes became unwritten extents');
    assert.deepEqual(readFileSync(path).subarray(0, 4096), Buffer.alloc(4096, 0x5a), 'data unchanged');
  } finally {
    await s.cleanup();
  }
});

test('advisor.probe measures nowait beside the file and reports it', async () => {
  const s = setup();
  try {
    const path = join(s.dir, 'probe.img');
    writeFileSync(path, Buffer.alloc(1 << 20, 1));
    const advice = (await call(s.router, 'advisor.probe', { path })) as FileAdvice;
    assert.ok(advice.probe, 'probe summary present');
    if (advice.probe.measured) {
      assert.equal(typeof advice.probe.nowait, 'boolean');
      assert.ok(advice.probe.nowaitWritesHonoured);
      assert.equal(advice.recommended.nowait, advice.probe.nowait ? 'on' : 'off');
    } else {
      // A filesystem without O_DIRECT (tmpfs on older kernels): the reason is the summary.
      assert.equal(advice.directIo, false);
      assert.match(advice.probe.summary, /O_DIRECT/);
    }
    assert.deepEqual(readFileSync(path), Buffer.alloc(1 << 20, 1), 'the probe never touches the file');
  } finally {
    await s.cleanup();
  }
});

test('advisor bad input: sentences for relative, missing, directory, character device, existing, unaligned, too small', async () => {
  const s = setup();
  try {
    await rejectsWith(s.router.call('advisor.inspect', { path: 'rel.img' }), 'INVALID_ARGUMENT', /Paths must be absolute/);
    await rejectsWith(s.router.call('advisor.inspect', {}), 'INVALID_ARGUMENT', /path/);
    await rejectsWith(s.router.call('advisor.inspect', { path: join(s.dir, 'nope.img') }), 'NOT_FOUND', /nope\.img does not exist/);
    await rejectsWith(s.router.call('advisor.inspect', { path: s.dir }), 'IS_DIRECTORY', /is a directory/);
    await rejectsWith(s.router.call('advisor.inspect', { path: '/dev/null' }), 'NOT_A_DISK', /character device/);
    await rejectsWith(s.router.call('advisor.probe', { path: join(s.dir, 'nope.img') }), 'NOT_FOUND');
    await rejectsWith(s.router.call('advisor.preallocate', { path: join(s.dir, 'nope.img') }), 'NOT_FOUND', /does not exist/);
    await rejectsWith(s.router.call('advisor.preallocate', { path: s.dir }), 'IS_DIRECTORY');
    await rejectsWith(s.router.call('advisor.preallocate', { path: '/dev/null' }), 'NOT_A_DISK');
    const path = join(s.dir, 'exists.img');
    writeFileSync(path, 'keep me');
    await rejectsWith(
      s.router.call('advisor.createImage', { path, sizeBytes: 1 << 20, preallocate: false }),
      'CONFLICT',
      /will not overwrite/,
    );
    assert.equal(readFileSync(path, 'utf8'), 'keep me');
    await rejectsWith(
      s.router.call('advisor.createImage', { path: join(s.dir, 'odd.img'), sizeBytes: (1 << 20) + 1, preallocate: false }),
      'SIZE_NOT_ALIGNED',
      /multiple of 512/,
    );
    await rejectsWith(
      s.router.call('advisor.createImage', { path: join(s.dir, 'tiny.img'), sizeBytes: 4096, preallocate: false }),
      'INVALID_ARGUMENT',
      /sizeBytes/,
    );
    await rejectsWith(
      s.router.call('advisor.createImage', { path: join(s.dir, 'no', 'dir.img'), sizeBytes: 1 << 20, preallocate: false }),
      'NOT_FOUND',
      /directory .* does not exist/,
    );
    await rejectsWith(
      s.router.call('advisor.createImage', { path: join(s.dir, 'p.img'), sizeBytes: 1 << 20 }),
      'INVALID_ARGUMENT',
      /preallocate/,
    );
  } finally {
    await s.cleanup();
  }
});

test('host.devices: real lsblk list matches the contract; the root device is refused with the reason', async () => {
  const s = setup();
  try {
    const { devices } = (await call(s.router, 'host.devices', {})) as { devices: HostDevice[] };
    for (const d of devices) {
      assert.equal(d.usable, d.reason === undefined, `${d.path}: usable and reason agree`);
      for (const p of d.partitions) assert.equal(devices.find((x) => x.path === p)?.parent, d.path, `${p} is listed with its parent`);
    }
    const rootMount = devices.filter((d) => d.mountpoints.includes('/'));
    for (const d of rootMount) {
      assert.equal(d.usable, false);
      assert.match(d.reason!, /root filesystem/);
    }
  } finally {
    await s.cleanup();
  }
});

test('toApiHostDevices flattens partitions after their disk and keeps every fact', () => {
  const part = (name: string, mounted: boolean): BlockHostDevice => ({
    name,
    path: `/dev/${name}`,
    type: 'part',
    sizeBytes: 1 << 30,
    model: null,
    rotational: false,
    removable: false,
    readOnly: false,
    fstype: mounted ? 'ext4' : null,
    mountpoints: mounted ? ['/srv'] : [],
    holders: [],
    partitions: [],
    usable: !mounted,
    reason: mounted ? `/dev/${name} is mounted at /srv.` : null,
  });
  const disk: BlockHostDevice = {
    name: 'sdz',
    path: '/dev/sdz',
    type: 'disk',
    sizeBytes: 2 << 30,
    model: 'Test Disk',
    rotational: true,
    removable: true,
    readOnly: true,
    fstype: null,
    mountpoints: ['/srv'],
    holders: [],
    partitions: [part('sdz1', true), part('sdz2', false)],
    usable: false,
    reason: 'its partition /dev/sdz1 is mounted at /srv.',
  };
  const flat = toApiHostDevices([disk]);
  assert.deepEqual(
    flat.map((d) => d.path),
    ['/dev/sdz', '/dev/sdz1', '/dev/sdz2'],
  );
  assert.deepEqual(flat[0], {
    path: '/dev/sdz',
    name: 'sdz',
    model: 'Test Disk',
    sizeBytes: 2 << 30,
    rotational: true,
    removable: true,
    readOnly: true,
    partitions: ['/dev/sdz1', '/dev/sdz2'],
    mountpoints: ['/srv'],
    holders: [],
    usable: false,
    reason: 'its partition /dev/sdz1 is mounted at /srv.',
    type: 'disk',
  });
  assert.deepEqual(
    { parent: flat[1]!.parent, fstype: flat[1]!.fstype, usable: flat[1]!.usable },
    { parent: '/dev/sdz', fstype: 'ext4', usable: false },
  );
  assert.equal(flat[2]!.reason, undefined);
  assert.equal(flat[2]!.fstype, undefined);
  for (const d of flat) methods['host.devices'].result.shape.devices.element.parse(d);
});

test('scratch disk: absent until made; first start with no VMs makes a sparse 1 GiB image; an existing file is never touched', async () => {
  const s = setup();
  try {
    const absent = (await call(s.router, 'scratch.get', {})) as ScratchDisk;
    assert.equal(absent.exists, false);
    assert.equal(absent.sizeBytes, null);
    assert.equal(absent.path, join(s.dir, 'data', 'spindle', 'scratch.img'));
    assert.equal(s.backend.ensureScratchDisk(), absent.path);
    const st = statSync(absent.path);
    assert.equal(st.size, SCRATCH_SIZE_BYTES);
    assert.equal(st.blocks, 0, 'sparse: nothing allocated');
    assert.equal(st.mode & 0o777, 0o600, "only its owner can read the guest's disk");
    assert.deepEqual(await call(s.router, 'scratch.get', {}), { path: absent.path, exists: true, sizeBytes: SCRATCH_SIZE_BYTES });
    // It is an ordinary image to the advisor.
    const advice = (await call(s.router, 'advisor.inspect', { path: absent.path })) as FileAdvice;
    assert.equal(advice.sparse, true);
    // Existing content stays as it is, through ensure and through create.
    writeFileSync(absent.path, 'user data');
    assert.equal(s.backend.ensureScratchDisk(), absent.path);
    assert.deepEqual(await call(s.router, 'scratch.get', { create: true }), { path: absent.path, exists: true, sizeBytes: 9 });
    assert.equal(readFileSync(absent.path, 'utf8'), 'user data');
    await rejectsWith(s.router.call('scratch.get', { create: 'yes' }), 'INVALID_ARGUMENT', /create/);
  } finally {
    await s.cleanup();
  }
});

test('scratch disk: not made on start when VMs exist, but made on request', async () => {
  const s = setup();
  try {
    const img = join(s.dir, 'vm.img');
    writeFileSync(img, '');
    truncateSync(img, 1 << 20);
    await s.router.call('vm.create', { name: 'has-a-vm', disks: [{ path: img }] });
    assert.equal(s.backend.ensureScratchDisk(), null);
    assert.equal(((await call(s.router, 'scratch.get', {})) as ScratchDisk).exists, false);
    const made = (await call(s.router, 'scratch.get', { create: true })) as ScratchDisk;
    assert.equal(made.exists, true);
    assert.equal(made.sizeBytes, SCRATCH_SIZE_BYTES);
  } finally {
    await s.cleanup();
  }
});

test('scratch disk: a data directory that cannot be made is a sentence', async () => {
  const s = setup();
  try {
    mkdirSync(join(s.dir, 'blocked'));
    writeFileSync(join(s.dir, 'blocked', 'spindle'), 'a file where the directory should be');
    const b = createBackend({ env: { ...s.env, XDG_DATA_HOME: join(s.dir, 'blocked') } });
    try {
      await rejectsWith(b.router.call('scratch.get', { create: true }), 'IO_ERROR', /data directory/);
      assert.throws(
        () => b.ensureScratchDisk(),
        (e: SpindleError) => e.code === 'IO_ERROR',
      );
    } finally {
      await b.close();
    }
  } finally {
    await s.cleanup();
  }
});
