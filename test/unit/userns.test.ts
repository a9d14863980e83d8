// --userns=auto without a kernel: the pool and its defaults, the allocator over a real
// store, and the spec's user namespace.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { newContainerRecord } from '../../src/engine/records.ts';
import {
  DEFAULT_USERNS_POOL,
  parseUsernsPool,
  subordinateRange,
  UsernsAllocator,
  usernsOptions,
} from '../../src/engine/userns.ts';
import { buildSpec, type SpecInput } from '../../src/runtime/spec.ts';
import { Store } from '../../src/store/index.ts';
import type { ContainerRecord } from '../../src/types/domain.ts';
import { isBerthError } from '../../src/util/errors.ts';

function rec(id: string): ContainerRecord {
  return newContainerRecord(
    id,
    `c-${id}`,
    {
      image: 'busybox',
      imageId: 'f'.repeat(64),
      cmd: ['true'],
      entrypoint: [],
      env: [],
      workdir: '/',
      user: '',
      hostname: id,
      labels: {},
      tty: false,
      openStdin: false,
      autoRemove: false,
      networkMode: 'none',
      stopSignal: 'SIGTERM',
      stopTimeout: 10,
      log: { maxSize: 0, maxFiles: 1, compress: false },
    },
    '2024-01-01T00:00:00.000Z',
  );
}

describe('userns pool options', () => {
  let etc: string;
  beforeEach(() => {
    etc = mkdtempSync(join(tmpdir(), 'berth-etc-'));
  });
  afterEach(() => rmSync(etc, { recursive: true, force: true }));

  it('parses START:COUNT and refuses what cannot hold a range', () => {
    assert.deepEqual(parseUsernsPool('200000:131072'), {
      uidStart: 200000,
      gidStart: 200000,
      count: 131072,
    });
    for (const bad of ['', '1:65535', '0:65536', '4294901760:65536', 'a:b', '1:2:3'])
      assert.throws(() => parseUsernsPool(bad), /Invalid userns-pool/);
  });

  it('takes the berth user subordinate ranges, else the default, and warns of overlaps', () => {
    assert.equal(usernsOptions('host', undefined, etc).source, 'built-in default');
    assert.deepEqual(usernsOptions('host', undefined, etc).options.pool, DEFAULT_USERNS_POOL);
    writeFileSync(join(etc, 'subuid'), 'alice:100000:65536\nberth:1000000:655360\n');
    writeFileSync(join(etc, 'subgid'), 'berth:2000000:327680\nbob:2100000:65536\n');
    assert.deepEqual(subordinateRange('x:1:2\nberth:3:4\n', 'berth'), { start: 3, count: 4 });
    const o = usernsOptions('auto', undefined, etc);
    assert.deepEqual(o.options, {
      defaultMode: 'auto',
      pool: { uidStart: 1000000, gidStart: 2000000, count: 327680 },
    });
    assert.deepEqual(o.warnings, [
      `${join(etc, 'subgid')}: bob's range 2100000:65536 overlaps the userns pool`,
    ]);
    // An explicit pool wins.
    assert.equal(usernsOptions('host', '5000000:65536', etc).options.pool.uidStart, 5000000);
    assert.throws(() => usernsOptions('maybe', undefined, etc), /Invalid userns-default/);
  });
});

describe('userns allocator', () => {
  let dir: string;
  let store: Store;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-userns-'));
    store = new Store(join(dir, 'berth.db'));
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const create = (a: UsernsAllocator, id: string) =>
    store.tx(() => {
      const r = a.assign(rec(id), 'auto');
      store.containers.insert(r);
      return r.config.userns;
    });

  it('hands out the lowest free range, frees it with the container, and runs out', () => {
    const a = new UsernsAllocator(store, {
      defaultMode: 'host',
      pool: { uidStart: 1_000_000, gidStart: 3_000_000, count: 3 * 65536 },
    });
    assert.deepEqual(create(a, 'a'), { uidBase: 1_000_000, gidBase: 3_000_000, size: 65536 });
    assert.equal(create(a, 'b')?.uidBase, 1_065_536);
    assert.equal(create(a, 'c')?.gidBase, 3_131_072);
    assert.throws(
      () => create(a, 'd'),
      (e) => isBerthError(e, 'USERNS_EXHAUSTED'),
    );
    assert.equal(store.containers.get('d'), undefined, 'the failed create left no row');
    store.tx(() => store.containers.delete('b'));
    assert.equal(store.userns.byContainer('b'), undefined, 'freed with the row');
    assert.equal(create(a, 'd')?.uidBase, 1_065_536);
    assert.equal(a.assign(rec('h'), 'host').config.userns, undefined);
  });

  it('survives a reopen and keeps clear of ranges from an earlier pool', () => {
    const a = new UsernsAllocator(store, {
      defaultMode: 'host',
      pool: { uidStart: 1_000_000, gidStart: 1_000_000, count: 10 * 65536 },
    });
    create(a, 'a');
    store.close();
    store = new Store(join(dir, 'berth.db'));
    // The new pool starts half a range into a's: its first two slots overlap it.
    const b = new UsernsAllocator(store, {
      defaultMode: 'host',
      pool: { uidStart: 1_000_000 - 32768, gidStart: 1_000_000 - 32768, count: 10 * 65536 },
    });
    assert.equal(create(b, 'b')?.uidBase, 1_000_000 - 32768 + 2 * 65536);
    assert.deepEqual(store.userns.byContainer('a'), {
      containerId: 'a',
      uidBase: 1_000_000,
      gidBase: 1_000_000,
      size: 65536,
    });
  });

  it('refuses the host network, another container network and privileged', () => {
    const a = new UsernsAllocator(store, { defaultMode: 'auto', pool: DEFAULT_USERNS_POOL });
    assert.equal(a.mode({}, 'bridge'), 'auto');
    assert.equal(a.mode({ userns: 'host' }, 'host'), 'host');
    assert.throws(() => a.mode({}, 'host'), /add --userns=host/);
    assert.throws(() => a.mode({ userns: 'auto' }, 'container'), /another container's network/);
    assert.throws(() => a.mode({ privileged: true }, 'none'), /privileged/);
    assert.throws(() => a.mode({ userns: 'private' }, 'none'), /Invalid userns/);
  });
});

describe('spec with a user namespace', () => {
  const base: SpecInput = {
    rootfs: '/run/berth/mnt/abc/rootfs',
    readonlyRootfs: true,
    args: ['sh'],
    env: [],
    cwd: '/',
    uid: 0,
    gid: 0,
    additionalGids: [],
    hostname: 'box',
    terminal: false,
    networkMode: 'bridge',
    netnsPath: '/run/netns/berth-abc',
    etcFiles: { hosts: '/h', hostname: '/hn', resolvConf: '/r' },
    cgroupsPath: '/berth/abc',
    pidsLimit: 4096,
    nofileLimit: 1024,
    tmpfs: [],
    shmSizeBytes: 65536,
  };
  const m = { uidBase: 100_000_000, gidBase: 100_131_072, size: 65536 };
  const noNetns: SpecInput = { ...base };
  delete (noNetns as { netnsPath?: string }).netnsPath;
  const sys = (s: ReturnType<typeof buildSpec>) => s.mounts.find((x) => x.destination === '/sys');

  it('joins the namespace berthd made, with its mappings', () => {
    const s = buildSpec({ ...base, userns: { ...m, path: '/run/berth/mnt/abc/userns' } });
    const ns = s.linux['namespaces'] as { type: string; path?: string }[];
    assert.deepEqual(ns[0], { type: 'user', path: '/run/berth/mnt/abc/userns' });
    assert.deepEqual(s.linux['uidMappings'], [
      { containerID: 0, hostID: 100_000_000, size: 65536 },
    ]);
    assert.deepEqual(s.linux['gidMappings'], [
      { containerID: 0, hostID: 100_131_072, size: 65536 },
    ]);
    // Its network namespace is its user namespace's: a sysfs of its own.
    assert.equal(sys(s)?.type, 'sysfs');
  });

  it('binds the host /sys read-only where the network namespace is not its own', () => {
    for (const input of [
      { ...noNetns, networkMode: 'host' as const },
      { ...noNetns, networkMode: 'container' as const, netnsPath: '/proc/1/ns/net' },
      base, // a berth network's namespace made by the host, not in the user namespace
    ]) {
      assert.deepEqual(sys(buildSpec({ ...input, userns: m })), {
        destination: '/sys',
        type: 'bind',
        source: '/sys',
        options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'],
      });
    }
    const own = buildSpec({ ...noNetns, networkMode: 'none', userns: m });
    assert.equal(sys(own)?.type, 'sysfs');
    assert.equal(buildSpec(base).linux['uidMappings'], undefined);
  });
});
