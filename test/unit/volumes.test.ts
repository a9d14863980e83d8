// Volumes without the kernel: names, sizes, mountinfo, the recovery plan, the store, and
// the service's create, remove and init against a stand-in host (no mount, no loop device).
import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/store/index.ts';
import { EventBus } from '../../src/engine/events.ts';
import {
  checkVolumeSize,
  planRecovery,
  validateVolumeName,
  VolumeService,
  type VolumeHost,
} from '../../src/engine/volumes.ts';
import { matchEvent, validateEventFilters } from '../../src/engine/event-filters.ts';
import {
  mountAt,
  mountsUnder,
  otherNamespaceHolders,
  parseMountinfo,
  type MountEntry,
} from '../../src/runtime/loopfs.ts';
import { humanSize, parseLabels, volumeRow } from '../../src/cli/volumes.ts';
import { BerthError, isBerthError } from '../../src/util/errors.ts';
import { silentLogger } from '../../src/util/logger.ts';
import type { EventRecord } from '../../src/types/domain.ts';

const MiB = 1024 * 1024;

describe('volume names and sizes', () => {
  it("takes docker's names, at least two characters", () => {
    for (const ok of ['db', 'pg-data', 'a.b_c-1', 'X9', '0x'])
      assert.doesNotThrow(() => validateVolumeName(ok));
    for (const bad of ['a', '', '.x', '-x', '_x', 'a/b', 'a b', 'ü1', 'n'.repeat(201)])
      assert.throws(
        () => validateVolumeName(bad),
        (e) => isBerthError(e, 'INVALID_ARGUMENT') && /^Invalid name: /.test(e.message),
        bad,
      );
  });

  it('names the field it was given', () => {
    assert.throws(() => validateVolumeName('/', 'volume'), /^BerthError: Invalid volume: /);
  });

  it('sizes: 0 is unsized, at least 1m, at most the data filesystem', () => {
    assert.doesNotThrow(() => checkVolumeSize(0));
    assert.doesNotThrow(() => checkVolumeSize(MiB));
    assert.throws(() => checkVolumeSize(MiB - 1), /Invalid size: .* below the minimum of 1m/);
    assert.throws(() => checkVolumeSize(-1), /Invalid size/);
    assert.throws(() => checkVolumeSize(1.5), /Invalid size/);
    assert.throws(
      () => checkVolumeSize(2 * 1024 ** 3, 1024 ** 3),
      /Invalid size: 2 GiB is more than the data filesystem holds \(1 GiB\)/,
    );
    assert.throws(() => checkVolumeSize(17 * 1024 ** 4), /more than the maximum of 16 TiB/);
  });
});

describe('mountinfo', () => {
  const text = [
    '22 27 0:21 / /proc rw,relatime shared:12 - proc proc rw',
    '42 27 7:0 / /var/lib/berth/volumes/a\\040b/_data rw,nodev,relatime shared:30 master:2 - ext4 /dev/loop0 rw',
    '43 27 0:44 / /var/lib/berth/volumes/a\\040b/_data rw - tmpfs tmpfs rw',
    '50 27 254:1 /srv/x /mnt/bind rw - ext4 /dev/vda rw',
    '',
  ].join('\n');
  const m = parseMountinfo(text);

  it('reads fields around the optional ones, with escapes decoded', () => {
    assert.equal(m.length, 4);
    assert.deepEqual(m[1], {
      majorMinor: '7:0',
      root: '/',
      mountPoint: '/var/lib/berth/volumes/a b/_data',
      fsType: 'ext4',
      source: '/dev/loop0',
    });
    assert.equal(m[3]?.root, '/srv/x');
  });

  it('the mount at a path is the top of the stack', () => {
    assert.equal(mountAt(m, '/var/lib/berth/volumes/a b/_data')?.fsType, 'tmpfs');
    assert.equal(mountAt(m, '/var/lib/berth/volumes'), undefined);
    assert.equal(mountsUnder(m, '/var/lib/berth/volumes/a b').length, 2);
    assert.equal(mountsUnder(m, '/var/lib/berth/volumes/a').length, 0);
  });

  it('finds other mount namespaces that hold a device, one pid each', async () => {
    const proc = mkdtempSync(join(tmpdir(), 'berth-proc-'));
    try {
      const mk = (pid: string, ns: string, info: string) => {
        mkdirSync(join(proc, pid, 'ns'), { recursive: true });
        symlinkSync(`mnt:[${ns}]`, join(proc, pid, 'ns', 'mnt'));
        writeFileSync(join(proc, pid, 'mountinfo'), info);
      };
      const holding = '42 27 7:3 / /x rw - ext4 /dev/loop3 rw\n';
      mk('self', '1', holding); // berthd's own namespace never counts
      mk('1', '1', holding);
      mk('200', '2', holding);
      mk('201', '2', holding); // same namespace as 200
      mk('300', '3', '22 27 0:21 / /proc rw - proc proc rw\n');
      mkdirSync(join(proc, 'sys'));
      assert.deepEqual(await otherNamespaceHolders('7:3', proc), [200]);
      assert.deepEqual(await otherNamespaceHolders('7:4', proc), []);
    } finally {
      rmSync(proc, { recursive: true, force: true });
    }
  });
});

describe('recovery plan', () => {
  it('finishes a committed create, undoes an uncommitted remove, discards the rest', () => {
    const steps = planRecovery(
      ['.creating-a', '.creating-b', '.removing-c', '.removing-d', 'e', 'f', '.creating-f', 'zz'],
      new Set(['a', 'c', 'e', 'f']),
    );
    assert.deepEqual(steps, [
      { kind: 'complete', entry: '.creating-a', name: 'a' },
      { kind: 'discard', entry: '.creating-b' },
      { kind: 'discard', entry: '.creating-f' }, // f is whole already
      { kind: 'restore', entry: '.removing-c', name: 'c' },
      { kind: 'discard', entry: '.removing-d' },
      { kind: 'orphan', entry: 'zz' },
    ]);
  });

  it('never restores a name twice', () => {
    const steps = planRecovery(['.creating-a', '.removing-a'], new Set(['a']));
    assert.deepEqual(
      steps.map((s) => s.kind),
      ['complete', 'discard'],
    );
  });
});

describe('volume event filters', () => {
  const ev = (type: EventRecord['type'], actorId: string): EventRecord => ({
    seq: 1,
    time: '2024-01-01T00:00:00.000Z',
    timeNano: 0n,
    type,
    action: 'create',
    actorId,
    attributes: { driver: 'local' },
  });

  it('type=volume and volume=NAME, matched whole', () => {
    assert.doesNotThrow(() => validateEventFilters({ type: ['volume'], volume: ['db'] }));
    assert.ok(matchEvent(ev('volume', 'db'), { type: ['volume'] }));
    assert.ok(matchEvent(ev('volume', 'db'), { volume: ['db'] }));
    assert.ok(!matchEvent(ev('volume', 'db2'), { volume: ['db'] }));
    assert.ok(!matchEvent(ev('container', 'db'), { volume: ['db'] }));
  });
});

describe('volume CLI helpers', () => {
  it("sizes as docker's HumanSize", () => {
    assert.equal(humanSize(0), '0B');
    assert.equal(humanSize(4096), '4.096kB');
    assert.equal(humanSize(20 * MiB), '20.97MB');
    assert.equal(humanSize(1024 ** 3), '1.074GB');
  });

  it('labels: key=value or a bare key', () => {
    assert.deepEqual(parseLabels(['a=1', 'b', 'c=x=y']), { a: '1', b: '', c: 'x=y' });
    assert.throws(() => parseLabels(['=v']), /Invalid label/);
  });

  it('ls rows carry docker’s fields', () => {
    const row = volumeRow({
      Name: 'db',
      Driver: 'local',
      Mountpoint: '/m',
      CreatedAt: 'now',
      Labels: { a: '1' },
      Scope: 'local',
      Options: {},
      SizeBytes: 0,
    });
    assert.equal(row['Size'], 'N/A');
    assert.equal(row['Labels'], 'a=1');
  });
});

// A host where mounts are entries in a table and the data directories are real. A mount
// follows its directory through renames, as the kernel's does: it is kept by inode.
class FakeHost implements VolumeHost {
  private readonly volumes: string;
  private entries: { ino: number; e: MountEntry }[] = [];
  constructor(volumes: string) {
    this.volumes = volumes;
  }
  get table(): MountEntry[] {
    const where = new Map<number, string>();
    for (const v of existsSync(this.volumes) ? readdirSync(this.volumes) : []) {
      const d = join(this.volumes, v, '_data');
      if (existsSync(d)) where.set(statSync(d).ino, d);
    }
    return this.entries.flatMap(({ ino, e }) => {
      const p = where.get(ino);
      return p ? [{ ...e, mountPoint: p }] : [];
    });
  }
  set table(v: MountEntry[]) {
    this.entries = this.entries.filter(({ e }) => v.some((x) => x.source === e.source));
  }
  busy = new Set<string>();
  holding: number[] = [];
  failMount = false;
  calls: string[] = [];
  private next = 0;

  async makeImage(image: string, size: number): Promise<void> {
    this.calls.push(`mkfs ${size}`);
    writeFileSync(image, '', { flag: 'wx' });
  }
  async mount(source: string, target: string): Promise<void> {
    this.calls.push(`mount ${source}`);
    if (this.failMount) throw new BerthError('RUNTIME_FAILED', 'mount failed (exit 32): no loop');
    const dev = source.startsWith('/dev/') ? source : `/dev/loop${this.next++}`;
    this.entries.push({
      ino: statSync(target).ino,
      e: {
        majorMinor: `7:${dev.slice(9)}`,
        root: '/',
        mountPoint: target,
        fsType: 'ext4',
        source: dev,
      },
    });
  }
  async unmount(target: string): Promise<'unmounted' | 'busy'> {
    this.calls.push(`umount ${target}`);
    if (this.busy.has(target)) return 'busy';
    const ino = statSync(target).ino;
    this.entries = this.entries.filter((x) => x.ino !== ino);
    return 'unmounted';
  }
  async check(): Promise<{ ok: boolean; output: string }> {
    return { ok: true, output: '' };
  }
  async mounts(): Promise<MountEntry[]> {
    return [...this.table];
  }
  async holders(): Promise<number[]> {
    return this.holding;
  }
  // Set: the loop device keeps reading this image after the unmount.
  stuckOn: string | undefined;
  backingFile(): string | undefined {
    return this.stuckOn;
  }
  async du(): Promise<number> {
    return 4096;
  }
}

describe('VolumeService', () => {
  let dir: string;
  let store: Store;
  let host: FakeHost;
  let svc: VolumeService;
  const events = () => store.events.after(0, 100).map((e) => `${e.type} ${e.action} ${e.actorId}`);

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-vol-'));
    store = new Store(join(dir, 'berth.db'));
    host = new FakeHost(join(dir, 'volumes'));
    svc = new VolumeService(store, new EventBus(store), silentLogger, {
      dataRoot: dir,
      host,
      detachWaitMs: 50,
    });
    await svc.init();
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates a sized volume mounted at its _data, recorded with its event', async () => {
    const v = await svc.create({ name: 'db', sizeBytes: 8 * MiB, labels: { a: '1' } });
    assert.equal(v.sizeBytes, 8 * MiB);
    assert.deepEqual(host.calls, [
      `mkfs ${8 * MiB}`,
      `mount ${join(dir, 'volumes', '.creating-db', 'disk.img')}`,
    ]);
    assert.equal(svc.mountpoint('db'), join(dir, 'volumes', 'db', '_data'));
    assert.deepEqual(readdirSync(join(dir, 'volumes')), ['db']);
    assert.deepEqual(events(), ['volume create db']);
    assert.deepEqual(store.volumes.get('db')?.labels, { a: '1' });
  });

  it('a failed mount leaves no file, no mount, no record and no event', async () => {
    host.failMount = true;
    await assert.rejects(svc.create({ name: 'db', sizeBytes: 8 * MiB }), /mount failed/);
    assert.deepEqual(readdirSync(join(dir, 'volumes')), []);
    assert.deepEqual(host.table, []);
    assert.equal(store.volumes.get('db'), undefined);
    assert.deepEqual(events(), []);
  });

  it('ensure makes an unsized volume once, as docker does for -v NAME:/path', async () => {
    const a = await svc.ensure('cache');
    const b = await svc.ensure('cache');
    assert.deepEqual(a, b);
    assert.equal(a.sizeBytes, 0);
    assert.ok(existsSync(svc.mountpoint('cache')));
    assert.deepEqual(events(), ['volume create cache']);
    await assert.rejects(svc.ensure('/abs'), /Invalid volume/);
  });

  it('refuses to remove a volume a container uses, even with force', async () => {
    await svc.create({ name: 'db', sizeBytes: 8 * MiB });
    svc.setUsedBy((n) => (n === 'db' ? ['0123456789abcdef0123'] : []));
    for (const force of [false, true])
      await assert.rejects(
        svc.remove('db', force),
        (e) =>
          isBerthError(e, 'VOLUME_IN_USE') && /in use by container 0123456789ab$/.test(e.message),
      );
    assert.ok(store.volumes.get('db'));
    assert.equal(host.table.length, 1);
    // and prune passes it by
    assert.deepEqual(await svc.prune(), { VolumesDeleted: [], SpaceReclaimed: 0 });
  });

  it('a busy mount or another namespace keeps the volume whole and mounted', async () => {
    await svc.create({ name: 'db', sizeBytes: 8 * MiB });
    const data = svc.mountpoint('db');
    host.busy.add(data);
    await assert.rejects(svc.remove('db'), (e) => isBerthError(e, 'VOLUME_BUSY'));
    host.busy.clear();
    host.holding = [4242];
    await assert.rejects(svc.remove('db'), /another mount namespace \(pid 4242\)/);
    host.holding = [];
    assert.ok(mountAt(host.table, data));
    assert.ok(store.volumes.get('db'));
    assert.deepEqual(events(), ['volume create db']);
  });

  it('a loop device that stays attached after the unmount is mounted again and reported', async () => {
    await svc.create({ name: 'db', sizeBytes: 8 * MiB });
    const data = svc.mountpoint('db');
    host.stuckOn = join(dir, 'volumes', 'db', 'disk.img');
    await assert.rejects(svc.remove('db'), /stayed attached/);
    assert.equal(mountAt(host.table, data)?.source, '/dev/loop0');
    assert.ok(store.volumes.get('db'));
  });

  it('remove unmounts, deletes and announces; force makes a missing volume no error', async () => {
    await svc.create({ name: 'db', sizeBytes: 8 * MiB });
    assert.equal(await svc.remove('db'), true);
    assert.deepEqual(host.table, []);
    assert.deepEqual(readdirSync(join(dir, 'volumes')), []);
    assert.deepEqual(events(), ['volume create db', 'volume destroy db']);
    await assert.rejects(svc.remove('db'), (e) => isBerthError(e, 'VOLUME_NOT_FOUND'));
    assert.equal(await svc.remove('db', true), false);
  });

  it('init mounts what is not mounted, and one that fails does not stop the others', async () => {
    await svc.create({ name: 'v1', sizeBytes: 8 * MiB });
    await svc.create({ name: 'v2', sizeBytes: 8 * MiB });
    host.table = []; // a reboot
    let failOn = join(dir, 'volumes', 'v1', 'disk.img');
    const mount = host.mount.bind(host);
    host.mount = async (s, t) => {
      if (s === failOn) throw new Error('bad superblock');
      return mount(s, t);
    };
    const r = await svc.init();
    assert.deepEqual(r, { volumes: 2, remounted: 1, failed: ['v1'] });
    assert.ok(mountAt(host.table, svc.mountpoint('v2')));
    // A later prepare() tries again, so a container never binds the bare directory.
    failOn = '';
    assert.equal(await svc.prepare('v1'), svc.mountpoint('v1'));
    assert.ok(mountAt(host.table, svc.mountpoint('v1')));
  });

  it('withVolumes holds the volumes: a remove waits until the caller is done', async () => {
    const order: string[] = [];
    let users: string[] = [];
    svc.setUsedBy(() => users);
    const held = svc.withVolumes(['bb', 'aa', 'aa'], async (paths) => {
      order.push(`held ${[...paths.keys()].join(',')}`);
      await new Promise((r) => setTimeout(r, 30));
      users = ['c0ffee'];
      order.push('recorded');
    });
    const rm = svc.remove('aa').catch((e: unknown) => {
      order.push(isBerthError(e, 'VOLUME_IN_USE') ? 'rm refused' : 'rm other');
    });
    await Promise.all([held, rm]);
    assert.deepEqual(order, ['held aa,bb', 'recorded', 'rm refused']);
  });
});
