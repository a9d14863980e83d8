// Named volumes against a real berthd: a sized volume ends in ENOSPC at its size on the
// host's filesystem, rm never loses data to a busy mount, and nothing (mount, loop device,
// directory) is left after rm, prune or a kill -9 of berthd at any moment of a create.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand, TestDaemon, waitFor } from '../helpers/daemon.ts';
import type { VolumeInspect } from '../../src/types/volume.ts';
import { isBerthError } from '../../src/util/errors.ts';

const MiB = 1024 * 1024;

const unescape = (s: string) =>
  s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

function mountPoints(mountinfo = '/proc/self/mountinfo'): string[] {
  return readFileSync(mountinfo, 'utf8')
    .split('\n')
    .map((l) => unescape(l.split(' ')[4] ?? ''))
    .filter(Boolean);
}

const mounted = (path: string) => mountPoints().includes(path);

async function loopDevices(): Promise<string> {
  return (await runCommand('losetup', ['-a'])).stdout;
}

// Whatever a failed test left: unmounted by path, deepest first.
async function unmountUnder(dir: string): Promise<void> {
  const under = mountPoints()
    .filter((m) => m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of under) await runCommand('umount', [m]);
}

describe('named volumes', () => {
  let d: TestDaemon;
  const procs: ChildProcess[] = [];
  const vols = () => join(d.root, 'volumes');

  before(async () => {
    d = await TestDaemon.start();
  });
  after(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await sleep(100);
    try {
      const { Volumes } = await d.client.listVolumes();
      for (const v of Volumes) await d.client.removeVolume(v.Name, true).catch(() => undefined);
    } catch {
      /* berthd is down: what is left is unmounted below */
    }
    await unmountUnder(d.dir);
    await d.destroy();
  });

  const inspect = async (name: string) =>
    (
      JSON.parse(await d.berthOk(['volume', 'inspect', name])) as VolumeInspect[]
    )[0] as VolumeInspect;

  // Leaves nothing of a removed volume on the host: directory, mount or loop device.
  async function assertGone(name: string): Promise<void> {
    const dir = join(vols(), name);
    assert.ok(!existsSync(dir), `${dir} is gone`);
    assert.ok(!mountPoints().some((m) => m.startsWith(`${dir}/`)), `nothing mounted in ${dir}`);
    // autoclear detaches the device as the last user lets go, which may trail the umount.
    await waitFor(
      async () => !(await loopDevices()).includes(join(dir, 'disk.img')),
      3000,
      `loop device of ${name} detached`,
    );
  }

  it('a sized volume ends in ENOSPC at its size, and the host gives it no more than that', async () => {
    assert.equal((await d.berthOk(['volume', 'create', '--size', '20m', 'fill'])).trim(), 'fill');
    const v = await inspect('fill');
    assert.equal(v.Mountpoint, join(vols(), 'fill', '_data'));
    assert.equal(v.SizeBytes, 20 * MiB);
    assert.deepEqual(v.Options, { size: String(20 * MiB) });
    assert.deepEqual(v.Status, { Mounted: true });
    assert.ok(mounted(v.Mountpoint), 'mounted where containers bind it');
    const image = join(vols(), 'fill', 'disk.img');
    assert.ok((await loopDevices()).includes(image), 'on a loop device');
    // Empty like an unsized volume: no lost+found, root's, 0755.
    assert.deepEqual(readdirSync(v.Mountpoint), []);
    const st = statSync(v.Mountpoint);
    assert.equal(st.mode & 0o7777, 0o755);
    assert.equal(st.uid, 0);

    const dd = await runCommand('dd', ['if=/dev/zero', `of=${v.Mountpoint}/fill`, 'bs=1M'], {
      timeoutMs: 60_000,
    });
    assert.notEqual(dd.code, 0, 'dd stops');
    assert.match(dd.stderr, /No space left on device/);
    const written = statSync(join(v.Mountpoint, 'fill')).size;
    assert.ok(written >= 18 * MiB, `most of the size is usable (${written})`);
    assert.ok(written <= 20 * MiB, `not more than the size (${written})`);
    const more = await runCommand('dd', [
      'if=/dev/zero',
      `of=${v.Mountpoint}/more`,
      'bs=1M',
      'count=1',
    ]);
    assert.match(more.stderr, /No space left on device/, 'and stays full');
    // The host's side: the sparse image has taken at most the volume's size. (Measured on
    // the image, not as the host's free space, which other writers on the host move.)
    const hostBytes = statSync(image).blocks * 512;
    assert.ok(hostBytes <= 20 * MiB, `host bytes ${hostBytes}`);
    const used = (await inspect('fill')).UsedBytes ?? 0;
    assert.ok(used >= written && used <= 20 * MiB, `UsedBytes ${used}`);

    await d.berthOk(['volume', 'rm', 'fill']);
    await assertGone('fill');
  });

  it('ls, inspect and --format show docker’s fields with the size', async () => {
    await d.berthOk([
      'volume',
      'create',
      '--size',
      '8m',
      '-l',
      'team=pay',
      '--label',
      'tier',
      'lv1',
    ]);
    await d.berthOk(['volume', 'create', 'lv2']);
    const ls = await d.berthOk(['volume', 'ls']);
    assert.match(ls, /^DRIVER\s+VOLUME NAME\n/);
    assert.match(ls, /^local\s+lv1$/m);
    assert.match(ls, /^local\s+lv2$/m);
    assert.equal(await d.berthOk(['volume', 'ls', '-q']), 'lv1\nlv2\n');
    assert.equal(
      await d.berthOk(['volume', 'ls', '--format', '{{.Name}} {{.Size}} {{.Labels}}']),
      'lv1 8.389MB team=pay,tier=\nlv2 N/A \n',
    );
    const json = (await d.berthOk(['volume', 'ls', '--format', 'json']))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { Name: string; Driver: string; SizeBytes: number });
    assert.deepEqual(
      json.map((j) => [j.Name, j.Driver, j.SizeBytes]),
      [
        ['lv1', 'local', 8 * MiB],
        ['lv2', 'local', 0],
      ],
    );
    const [a, b] = JSON.parse(
      await d.berthOk(['volume', 'inspect', 'lv1', 'lv2']),
    ) as VolumeInspect[];
    assert.ok(a && b);
    assert.deepEqual(Object.keys(a).slice(0, 7), [
      'Name',
      'Driver',
      'Mountpoint',
      'CreatedAt',
      'Labels',
      'Scope',
      'Options',
    ]);
    assert.deepEqual(a.Labels, { team: 'pay', tier: '' });
    assert.equal(a.Scope, 'local');
    assert.match(a.CreatedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(b.SizeBytes, 0);
    assert.deepEqual(b.Options, {});
    assert.equal(b.Status, undefined);
    assert.equal(typeof b.UsedBytes, 'number');
    assert.equal(
      (await d.berthOk(['volume', 'inspect', '-f', '{{.Name}} {{.Labels.team}}', 'lv1'])).trim(),
      'lv1 pay',
    );
    const missing = await d.berth(['volume', 'inspect', 'lv1', 'nosuch']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /No such volume: nosuch/);
    assert.match(missing.stdout, /"lv1"/);
    // Creating again with the same size is docker's no-op; another size is refused.
    assert.equal((await d.berthOk(['volume', 'create', '--size', '8m', 'lv1'])).trim(), 'lv1');
    const other = await d.berth(['volume', 'create', '--size', '9m', 'lv1']);
    assert.equal(other.code, 125);
    assert.match(other.stderr, /already exists with size 8 MiB/);
    await assert.rejects(d.client.createVolume({ name: 'lv2', sizeBytes: 4 * MiB }), (e) =>
      isBerthError(e, 'VOLUME_NAME_IN_USE'),
    );
    // rm: each name reported, a missing one fails the command (exit 1 with several).
    const rm = await d.berth(['volume', 'rm', 'lv1', 'nosuch', 'lv2']);
    assert.equal(rm.code, 1);
    assert.equal(rm.stdout, 'lv1\nlv2\n');
    assert.match(rm.stderr, /No such volume: nosuch/);
    assert.equal((await d.berth(['volume', 'rm', 'nosuch'])).code, 125);
    assert.equal((await d.berth(['volume', 'rm', '-f', 'nosuch'])).code, 0);
    await assertGone('lv1');
    await assertGone('lv2');
  });

  it('bad names and sizes are refused with the field named, and nothing is made', async () => {
    const cases: [string[], RegExp][] = [
      [['x'], /Invalid name: "x" is not a volume name/],
      [['.hidden'], /Invalid name/],
      [['a/b'], /Invalid name/],
      [['has space'], /Invalid name/],
      [['n'.repeat(201)], /Invalid name/],
      [['--size', '512k', 'small'], /Invalid size: 512 KiB is below the minimum of 1m/],
      [['--size', 'lots', 'bad'], /Invalid size: "lots" is not a size/],
      [['--size', '100t', 'huge'], /Invalid size: 100 TiB is more than/],
      [['--label', '=v', 'nokey'], /Invalid label/],
    ];
    for (const [args, re] of cases) {
      const r = await d.berth(['volume', 'create', ...args]);
      assert.equal(r.code, 125, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
    await assert.rejects(
      d.client.createVolume({ name: 'neg', sizeBytes: -1 }),
      (e) => isBerthError(e, 'INVALID_ARGUMENT') && /sizeBytes/.test(e.message),
    );
    await assert.rejects(
      d.client.createVolume({ name: '' }),
      (e) => isBerthError(e, 'INVALID_ARGUMENT') && /name/.test(e.message),
    );
    assert.deepEqual(readdirSync(vols()), []);
    assert.equal(await d.berthOk(['volume', 'ls', '-q']), '');
  });

  it('rm of a busy volume fails, keeps it mounted and loses nothing', async () => {
    await d.berthOk(['volume', 'create', '--size', '16m', 'busy']);
    const mp = (await inspect('busy')).Mountpoint;
    writeFileSync(join(mp, 'keep'), 'precious\n');

    // A host process working in it: umount says busy.
    const inside = spawn('sleep', ['60'], { cwd: mp, stdio: 'ignore' });
    procs.push(inside);
    await sleep(100);
    let r = await d.berth(['volume', 'rm', 'busy']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /Volume busy is busy: a process has files open/);
    assert.ok(mounted(mp));
    assert.equal(readFileSync(join(mp, 'keep'), 'utf8'), 'precious\n');
    inside.kill('SIGKILL');
    await new Promise((res) => inside.once('exit', res));

    // A copy of the mount in another namespace (as a container binding it would hold):
    // umount here would succeed, and leave the filesystem alive there on its loop device.
    const ns = spawn('unshare', ['-m', '--propagation', 'private', 'sleep', '60'], {
      stdio: 'ignore',
    });
    procs.push(ns);
    await waitFor(
      () =>
        existsSync(`/proc/${ns.pid}/mountinfo`) &&
        mountPoints(`/proc/${ns.pid}/mountinfo`).includes(mp),
      5000,
      'the namespace with its copy',
    );
    r = await d.berth(['volume', 'rm', 'busy']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, new RegExp(`another mount namespace \\(pid ${ns.pid}\\)`));
    assert.ok(mounted(mp));
    assert.equal(readFileSync(join(mp, 'keep'), 'utf8'), 'precious\n');
    ns.kill('SIGKILL');
    await new Promise((res) => ns.once('exit', res));

    await d.berthOk(['volume', 'rm', 'busy']);
    await assertGone('busy');
  });

  it('prune removes every volume and says how much space came back', async () => {
    await d.berthOk(['volume', 'create', '--size', '10m', 'p1']);
    await d.berthOk(['volume', 'create', 'p2']);
    const mp = (await inspect('p1')).Mountpoint;
    await runCommand('dd', ['if=/dev/zero', `of=${mp}/f`, 'bs=1M', 'count=3']);
    // No answer (end of input) is no.
    const asked = await d.berth(['volume', 'prune'], { input: '' });
    assert.equal(asked.code, 0);
    assert.match(asked.stdout, /WARNING! This will remove all local volumes/);
    assert.equal(await d.berthOk(['volume', 'ls', '-q']), 'p1\np2\n');
    const r = await d.berth(['volume', 'prune'], { input: 'y\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Deleted Volumes:\np1\np2\n\nTotal reclaimed space: \d/);
    const space = /Total reclaimed space: ([\d.]+)MB/.exec(r.stdout);
    assert.ok(space && Number(space[1]) >= 3, r.stdout);
    assert.equal(await d.berthOk(['volume', 'ls', '-q']), '');
    assert.equal((await d.berthOk(['volume', 'prune', '-f'])).trim(), 'Total reclaimed space: 0B');
    await assertGone('p1');
    await assertGone('p2');
  });

  it('volume events: create and destroy, by type and by name', async () => {
    await d.berthOk(['volume', 'create', '--size', '4m', 'ev1']);
    await d.berthOk(['volume', 'create', 'ev2']);
    await d.berthOk(['volume', 'rm', 'ev1', 'ev2']);
    const out = await d.berthOk([
      'events',
      '--filter',
      'type=volume',
      '--filter',
      'volume=ev1',
      '--format',
      '{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.driver}} {{.Actor.Attributes.size}}',
    ]);
    assert.equal(out, `volume create ev1 local ${4 * MiB}\nvolume destroy ev1 local ${4 * MiB}\n`);
    const bad = await d.berth(['events', '--filter', 'type=volumes']);
    assert.equal(bad.code, 125);
  });

  it('a kill -9 of berthd at any moment of a create leaves the volume whole or nothing', async (t) => {
    const outcomes: string[] = [];
    for (const delayMs of [60, 75, 85, 95, 105, 115, 130, 150, 180]) {
      const name = `crash${delayMs}`;
      const run = d.berth(['volume', 'create', '--size', '40m', name]);
      await sleep(delayMs);
      await d.kill9();
      await run;
      await d.startProcess();
      const listed = (await d.berthOk(['volume', 'ls', '-q'])).trim().split('\n').filter(Boolean);
      outcomes.push(`${delayMs}ms: ${listed.includes(name) ? 'made' : 'not made'}`);
      // Only whole volumes in the directory, each mounted; no staging left behind.
      assert.deepEqual(readdirSync(vols()).sort(), [...listed].sort(), `after ${delayMs} ms`);
      for (const n of listed) assert.ok(mounted(join(vols(), n, '_data')), `${n} mounted`);
      assert.ok(
        !mountPoints().some(
          (m) => m.startsWith(`${vols()}/`) && !listed.some((n) => m === join(vols(), n, '_data')),
        ),
        `no stray mount after ${delayMs} ms`,
      );
    }
    t.diagnostic(outcomes.join(', '));
    await d.berthOk(['volume', 'prune', '-f']);
    assert.deepEqual(readdirSync(vols()), [], d.log);
    assert.ok(!(await loopDevices()).includes(vols()), 'no loop device left');
  });

  it('volumes survive a kill -9 of berthd, and one unmounted meanwhile (a reboot) is mounted again', async () => {
    await d.berthOk(['volume', 'create', '--size', '12m', 'kept']);
    await d.berthOk(['volume', 'create', 'keptplain']);
    const mp = (await inspect('kept')).Mountpoint;
    const plain = (await inspect('keptplain')).Mountpoint;
    writeFileSync(join(mp, 'data'), 'sized\n');
    writeFileSync(join(plain, 'data'), 'plain\n');
    await d.kill9();
    // What a reboot does to the mount, plus a half-made create and a half-done remove.
    const r = await runCommand('umount', [mp]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!mounted(mp));
    await waitFor(
      async () => !(await loopDevices()).includes(join(vols(), 'kept', 'disk.img')),
      3000,
      'loop device detached',
    );
    const ghost = join(vols(), '.creating-ghost');
    await runCommand('mkdir', ['-p', join(ghost, '_data')]);
    await runCommand('truncate', ['-s', '4M', join(ghost, 'disk.img')]);
    await runCommand('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', join(ghost, 'disk.img')]);
    assert.equal(
      (await runCommand('mount', ['-o', 'loop', join(ghost, 'disk.img'), join(ghost, '_data')]))
        .code,
      0,
    );
    await runCommand('mkdir', ['-p', join(vols(), '.removing-gone', '_data')]);

    await d.startProcess();
    assert.ok(mounted(mp), 'mounted again at start');
    assert.equal(readFileSync(join(mp, 'data'), 'utf8'), 'sized\n');
    assert.equal(readFileSync(join(plain, 'data'), 'utf8'), 'plain\n');
    assert.equal(await d.berthOk(['volume', 'ls', '-q']), 'kept\nkeptplain\n');
    assert.deepEqual((await inspect('kept')).Status, { Mounted: true });
    assert.ok(!existsSync(ghost) && !existsSync(join(vols(), '.removing-gone')), 'leftovers gone');
    await waitFor(
      async () => !(await loopDevices()).includes(join(ghost, 'disk.img')),
      3000,
      'the half-made create’s loop device detached',
    );

    await d.berthOk(['volume', 'rm', 'kept', 'keptplain']);
    await assertGone('kept');
    await assertGone('keptplain');
  });
});
