// User namespaces (--userns=auto): root inside is an unprivileged uid on the host, each
// container has a range of its own from the pool (freed on removal, kept across berthd
// restarts), the image's shared layers keep their ownership inside through idmapped
// mounts, and the monitor's restarts (berthd up or down) mount them again.
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pidAlive, TestDaemon, waitFor, waitForValue } from '../helpers/daemon.ts';

interface Inspect {
  Id: string;
  RestartCount: number;
  State: { Status: string; Pid: number };
  HostConfig: {
    UsernsMode: string;
    UsernsMapping?: { UidBase: number; GidBase: number; Size: number };
  };
}

// The Uid and Gid lines of a host process: real, effective, saved, filesystem ids.
function hostIds(pid: number): { uid: number[]; gid: number[] } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const ids = (k: string) =>
    (new RegExp(`^${k}:\\s+(.*)$`, 'm').exec(status)?.[1] ?? '').split(/\s+/).map(Number);
  return { uid: ids('Uid'), gid: ids('Gid') };
}

function mapping(i: Inspect): { UidBase: number; GidBase: number; Size: number } {
  assert.equal(i.HostConfig.UsernsMode, 'auto');
  assert.ok(i.HostConfig.UsernsMapping, 'inspect shows the range');
  return i.HostConfig.UsernsMapping;
}

describe('user namespaces', () => {
  let d: TestDaemon;
  before(async () => {
    d = await TestDaemon.start();
    // mkdtemp made it 0700: the container's root must be able to pass through it to reach
    // its root under the run root (berthd opens its own directories, never others').
    chmodSync(d.dir, 0o711);
  });
  after(async () => {
    await d.destroy();
  });

  const exec = async (id: string, script: string) =>
    (await d.berthOk(['exec', id, 'sh', '-c', script])).trim();

  it('runs root as an unprivileged host uid, with the image idmapped', async () => {
    const id = await d.runDetached(['--userns=auto', 'busybox', 'sleep', '1000']);
    const i = await d.inspect<Inspect>(id);
    const m = mapping(i);
    assert.ok(m.UidBase >= 100_000_000 && m.GidBase >= 100_000_000, `a pool range: ${m.UidBase}`);
    assert.equal(m.Size, 65536);
    // From the host: every uid and gid of the container's init is the range's base.
    const ids = hostIds(i.State.Pid);
    assert.deepEqual(ids.uid, [m.UidBase, m.UidBase, m.UidBase, m.UidBase]);
    assert.deepEqual(ids.gid, [m.GidBase, m.GidBase, m.GidBase, m.GidBase]);
    assert.equal(
      readFileSync(`/proc/${i.State.Pid}/uid_map`, 'utf8').trim().split(/\s+/).join(' '),
      `0 ${m.UidBase} 65536`,
    );
    // Inside: root, and the image's files keep their ownership (the layers are shared,
    // owned by host root on disk, and mounted idmapped).
    assert.equal(await exec(id, 'id -u; id -g'), '0\n0');
    assert.equal(
      await exec(id, 'stat -c %u:%g /bin/busybox / /etc /etc/hosts'),
      '0:0\n'.repeat(4).trim(),
    );
    assert.ok(!(await d.journal(id)).some((e) => e.action === 'idmap-fallback'));
    // Root inside is nobody to the host's files: /proc/sysrq-trigger stays out of reach.
    const r = await d.berth(['exec', id, 'sh', '-c', 'echo h > /proc/sysrq-trigger']);
    assert.notEqual(r.code, 0);
    await d.berthOk(['rm', '-f', id]);
    assert.deepEqual(d.leaks([id]), []);
  });

  it('files it creates in a volume carry the mapped ids on the host', async () => {
    await d.berthOk(['volume', 'create', 'usv']);
    const id = await d.runDetached([
      '--userns=auto',
      '-v',
      'usv:/data',
      'busybox',
      'sleep',
      '1000',
    ]);
    const m = mapping(await d.inspect<Inspect>(id));
    await exec(id, 'echo hi > /data/f && mkdir /data/d && chown 1000:2000 /data/d');
    const vol = (
      JSON.parse(await d.berthOk(['volume', 'inspect', 'usv'])) as { Mountpoint: string }[]
    )[0];
    assert.ok(vol);
    const f = statSync(join(vol.Mountpoint, 'f'));
    assert.deepEqual([f.uid, f.gid], [m.UidBase, m.GidBase]);
    const dd = statSync(join(vol.Mountpoint, 'd'));
    assert.deepEqual([dd.uid, dd.gid], [m.UidBase + 1000, m.GidBase + 2000]);
    // Inside they are the container's own.
    assert.equal(await exec(id, 'stat -c %u:%g /data/f /data/d'), '0:0\n1000:2000');
    await d.berthOk(['rm', '-f', id]);
    await d.berthOk(['volume', 'rm', 'usv']);
  });

  it('gives containers disjoint ranges, frees a range on rm, keeps them across kill -9', async () => {
    const a = await d.runDetached(['--userns=auto', 'busybox', 'sleep', '1000']);
    const b = await d.runDetached(['--userns=auto', 'busybox', 'sleep', '1000']);
    const ma = mapping(await d.inspect<Inspect>(a));
    const mb = mapping(await d.inspect<Inspect>(b));
    const disjoint = (x: number, y: number) => x + 65536 <= y || y + 65536 <= x;
    assert.ok(disjoint(ma.UidBase, mb.UidBase) && disjoint(ma.GidBase, mb.GidBase));
    const pb = (await d.inspect<Inspect>(b)).State.Pid;
    assert.equal(hostIds(pb).uid[0], mb.UidBase);

    // Removed: its range is the next one handed out.
    await d.berthOk(['rm', '-f', a]);
    const c = (await d.berthOk(['create', '--userns=auto', 'busybox', 'true'])).trim();
    assert.equal(mapping(await d.inspect<Inspect>(c)).UidBase, ma.UidBase);

    // berthd killed and started again: the ranges are where they were, b still runs in
    // its own, and a new container gets none of them.
    await d.kill9();
    await d.startProcess();
    const ib = await d.inspect<Inspect>(b);
    assert.equal(ib.State.Status, 'running');
    assert.deepEqual(mapping(ib), mb);
    assert.equal(hostIds(ib.State.Pid).uid[0], mb.UidBase);
    assert.equal(mapping(await d.inspect<Inspect>(c)).UidBase, ma.UidBase);
    const e = (await d.berthOk(['create', '--userns=auto', 'busybox', 'true'])).trim();
    const me = mapping(await d.inspect<Inspect>(e));
    assert.ok(disjoint(me.UidBase, ma.UidBase) && disjoint(me.UidBase, mb.UidBase));
    await d.berthOk(['rm', '-f', b, c, e]);
  });

  it('comes back in its range when the monitor restarts it, berthd up or down', async () => {
    const id = await d.runDetached([
      '--userns=auto',
      '--restart',
      'always',
      'busybox',
      'sleep',
      '1000',
    ]);
    const m = mapping(await d.inspect<Inspect>(id));
    const restarted = async (old: number) =>
      waitForValue('a restart', async () => {
        const i = await d.inspect<Inspect>(id);
        return i.State.Status === 'running' && i.State.Pid !== old && i.State.Pid > 0
          ? i
          : undefined;
      });
    const p1 = (await d.inspect<Inspect>(id)).State.Pid;
    process.kill(p1, 'SIGKILL');
    const i2 = await restarted(p1);
    assert.equal(hostIds(i2.State.Pid).uid[0], m.UidBase);
    assert.equal(await exec(id, 'id -u; stat -c %u /bin/busybox'), '0\n0');

    // With berthd down the monitor alone mounts the idmapped root again.
    const pidFile = join(d.runRoot, 'c', id, 'container.pid');
    await d.kill9();
    process.kill(i2.State.Pid, 'SIGKILL');
    const p3 = await waitForValue('the restart by the monitor', () => {
      let p = 0;
      try {
        p = Number(readFileSync(pidFile, 'utf8').trim());
      } catch {
        // Gone between two runs: the monitor writes it again at each `runc create`.
      }
      return Promise.resolve(p > 0 && p !== i2.State.Pid && pidAlive(p) ? p : undefined);
    });
    await waitFor(() => hostIds(p3).uid[0] === m.UidBase, 5000, 'the mapped uid');
    await d.startProcess();
    const i3 = await d.inspect<Inspect>(id);
    assert.equal(i3.State.Pid, p3);
    assert.equal(await exec(id, 'id -u; stat -c %u /bin/busybox'), '0\n0');
    assert.ok(!(await d.journal(id)).some((e) => e.action === 'idmap-fallback'));
    await d.berthOk(['rm', '-f', id]);
    assert.deepEqual(d.leaks([id]), []);
  });

  it('idmaps a read-write root and a root with new mount points', async () => {
    const rw = await d.berth([
      'run',
      '--rm',
      '--userns=auto',
      '--read-write',
      'busybox',
      'sh',
      '-c',
      'echo x > /etc/new && chown 7:7 /etc/passwd && stat -c %u:%g / /etc/new /etc/passwd /bin/busybox',
    ]);
    assert.equal(rw.code, 0, rw.stderr);
    assert.equal(rw.stdout.trim(), '0:0\n0:0\n7:7\n0:0');
    const mp = await d.berth([
      'run',
      '--rm',
      '--userns=auto',
      '--tmpfs',
      '/new/point',
      'busybox',
      'sh',
      '-c',
      'stat -c %u:%g / /bin/busybox /new/point',
    ]);
    assert.equal(mp.code, 0, mp.stderr);
    assert.equal(mp.stdout.trim(), '0:0\n0:0\n0:0');
  });

  it('keeps the host namespace with --userns=host, and checks the mode', async () => {
    const h = await d.berthOk([
      'run',
      '--rm',
      '--userns=host',
      'busybox',
      'cat',
      '/proc/self/uid_map',
    ]);
    assert.equal(h.trim().split(/\s+/).join(' '), '0 0 4294967295');
    const dflt = await d.berthOk(['run', '--rm', 'busybox', 'cat', '/proc/self/uid_map']);
    assert.equal(dflt.trim().split(/\s+/).join(' '), '0 0 4294967295', 'the default is host');
    const bad = await d.berth(['create', '--userns=bogus', 'busybox']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /Invalid userns: "bogus" must be auto or host/);
    const net = await d.berth(['create', '--userns=auto', '--network', 'host', 'busybox']);
    assert.notEqual(net.code, 0);
    assert.match(net.stderr, /userns.*host's network/);
  });
});

describe('user namespaces: daemon default and pool', () => {
  let d: TestDaemon;
  before(async () => {
    d = await TestDaemon.start(['--userns-default', 'auto', '--userns-pool', '300000000:131072']);
    chmodSync(d.dir, 0o711);
  });
  after(async () => {
    await d.destroy();
  });

  it('uses the default, the pool, and says when the pool is used up', async () => {
    const own = await d.berthOk(['run', '--rm', 'busybox', 'cat', '/proc/self/uid_map']);
    assert.equal(own.trim().split(/\s+/).join(' '), '0 300000000 65536');
    const a = (await d.berthOk(['create', 'busybox', 'true'])).trim();
    const b = (await d.berthOk(['create', 'busybox', 'true'])).trim();
    assert.equal(mapping(await d.inspect<Inspect>(a)).UidBase, 300_000_000);
    assert.equal(mapping(await d.inspect<Inspect>(b)).UidBase, 300_065_536);
    const full = await d.berth(['create', 'busybox', 'true']);
    assert.notEqual(full.code, 0);
    assert.match(full.stderr, /all 2 ranges of 65536 ids in the pool 300000000:131072 are taken/);
    const h = (await d.berthOk(['create', '--userns=host', 'busybox', 'true'])).trim();
    assert.equal((await d.inspect<Inspect>(h)).HostConfig.UsernsMode, 'host');
    // With the daemon's default at auto, the host's network needs --userns=host.
    const net = await d.berth(['create', '--network', 'host', 'busybox', 'true']);
    assert.match(net.stderr, /add --userns=host/);
    await d.berthOk(['rm', '-f', a, b, h]);
  });
});
