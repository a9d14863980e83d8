// Read-only roots, bounded writable space, tmpfs and bind mounts with their options, all
// checked from inside real containers; nothing left behind.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCommand, TestDaemon } from '../helpers/daemon.ts';

const MIB = 1024 * 1024;

// A container's mounts under dir; images' shared roots stay mounted by design.
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(dir) && !/\/images\/[0-9a-f]{64}\/rootfs$/.test(m));
}

function loopsFor(dir: string): Promise<string> {
  return runCommand('/usr/sbin/losetup', ['-a']).then((r) =>
    r.stdout
      .split('\n')
      .filter((l) => l.includes(dir))
      .join('\n'),
  );
}

describe('storage: read-only roots, sized writable space, mounts', () => {
  let d: TestDaemon;
  let host: string;
  before(async () => {
    d = await TestDaemon.start();
    host = mkdtempSync('/tmp/bt-host-');
  });
  after(async () => {
    rmSync(host, { recursive: true, force: true });
    await d.destroy();
  });

  it('a default container cannot write to /, and /tmp ends in ENOSPC at its size', async () => {
    const free = statfsSync('/').bavail;
    const r = await d.berth([
      'run',
      '--rm',
      'busybox',
      'sh',
      '-c',
      'touch /x 2>&1; dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>&1; df -k /tmp | tail -1',
    ]);
    assert.match(r.stdout, /Read-only file system/);
    assert.match(r.stdout, /No space left on device/);
    const used = Number(r.stdout.trim().split('\n').at(-1)?.trim().split(/\s+/)[2]);
    assert.ok(used >= 60 * 1024 && used <= 64 * 1024, `tmpfs used ${used} KiB`);
    // tmpfs is memory, not disk: the host's free space did not move by 64 MiB.
    const after = statfsSync('/').bavail;
    assert.ok((free - after) * statfsSync('/').bsize < 32 * MIB);
  });

  it('tmpfs sizes follow the memory limit, and --tmpfs/--shm-size take sizes and options', async () => {
    const out = await d.berthOk([
      'run',
      '--rm',
      '-m',
      '32m',
      '--tmpfs',
      '/scratch:size=8m,mode=0700,exec',
      '--shm-size',
      '4m',
      'busybox',
      'sh',
      '-c',
      'df -k /tmp /scratch /dev/shm | tail -3; stat -c %a /scratch; grep " /scratch " /proc/mounts',
    ]);
    const lines = out.trim().split('\n');
    const size = (i: number) => Number(lines[i]?.trim().split(/\s+/)[1]);
    assert.equal(size(0), 32 * 1024, '/tmp capped by the memory limit');
    assert.equal(size(1), 8 * 1024);
    assert.equal(size(2), 4 * 1024);
    assert.equal(lines[3], '700');
    assert.doesNotMatch(lines[4] ?? '', /noexec/);
    assert.match(lines[4] ?? '', /nosuid/);
  });

  it('binds honour ro and noexec, checked from inside', async () => {
    writeFileSync(join(host, 'data.txt'), 'from the host\n');
    writeFileSync(join(host, 'run.sh'), '#!/bin/sh\necho ran\n', { mode: 0o755 });
    const out = await d.berth([
      'run',
      '--rm',
      '-v',
      `${host}:/ro:ro`,
      '--mount',
      `type=bind,source=${host},target=/nx,noexec`,
      '-v',
      `${host}:/rw`,
      'busybox',
      'sh',
      '-c',
      'cat /ro/data.txt; touch /ro/new 2>&1; /nx/run.sh 2>&1; /rw/run.sh; echo w > /rw/written',
    ]);
    assert.match(out.stdout, /from the host/);
    assert.match(out.stdout, /Read-only file system/);
    assert.match(out.stdout, /Permission denied/);
    assert.match(out.stdout, /^ran$/m);
    assert.equal(readFileSync(join(host, 'written'), 'utf8'), 'w\n');
  });

  it('--read-write: ENOSPC at the writable size, and --ephemeral forgets writes on restart', async () => {
    const id = await d.runDetached([
      '--read-write',
      '--writable-size',
      '64m',
      '--ephemeral',
      'busybox',
      'sleep',
      '1000',
    ]);
    const r = await d.berth([
      'exec',
      id,
      'sh',
      '-c',
      'echo hi > /marker; dd if=/dev/zero of=/fill bs=1M count=200 2>&1; ls -l /fill',
    ]);
    assert.match(r.stdout, /No space left on device/);
    const bytes = Number(r.stdout.trim().split('\n').at(-1)?.trim().split(/\s+/)[4]);
    assert.ok(bytes > 48 * MIB && bytes <= 64 * MIB, `wrote ${bytes} bytes`);
    // Still healthy: it runs commands, and the host is untouched.
    assert.equal((await d.berthOk(['exec', id, 'cat', '/marker'])).trim(), 'hi');
    await d.berthOk(['restart', '-t', '0', id]);
    const after = await d.berth(['exec', id, 'sh', '-c', 'ls /marker /fill 2>&1']);
    assert.match(after.stdout, /No such file/);
    await d.berthOk(['rm', '-f', id]);
    assert.deepEqual(mountsUnder(d.root), []);
    assert.deepEqual(mountsUnder(d.runRoot), []);
    assert.equal(await loopsFor(d.root), '');
  });

  it('--ephemeral also resets the root when the monitor restarts the container', async () => {
    const id = await d.runDetached([
      '--read-write',
      '--writable-size',
      '32m',
      '--ephemeral',
      '--restart',
      'always',
      'busybox',
      'sleep',
      '1000',
    ]);
    await d.berthOk(['exec', id, 'sh', '-c', 'echo gone > /etc/marker']);
    const inspect = async () =>
      (
        JSON.parse(await d.berthOk(['inspect', id])) as { State: { Pid: number; Status: string } }[]
      )[0];
    const pid = (await inspect())?.State.Pid ?? 0;
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100; i++) {
      const s = (await inspect())?.State;
      if (s?.Status === 'running' && s.Pid !== pid) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const r = await d.berth(['exec', id, 'cat', '/etc/marker']);
    assert.notEqual(r.code, 0);
    await d.berthOk(['rm', '-f', id]);
    assert.deepEqual(mountsUnder(d.runRoot), []);
  });

  it('a writable root without --ephemeral keeps its writes across a restart', async () => {
    const id = await d.runDetached([
      '--read-write',
      '--writable-size',
      '32m',
      'busybox',
      'sleep',
      '1000',
    ]);
    await d.berthOk(['exec', id, 'sh', '-c', 'echo kept > /etc/kept']);
    await d.berthOk(['restart', '-t', '0', id]);
    assert.equal((await d.berthOk(['exec', id, 'cat', '/etc/kept'])).trim(), 'kept');
    // The image itself is untouched.
    const c = (JSON.parse(await d.berthOk(['inspect', id])) as { Image: string }[])[0];
    const rootfs = join(d.root, 'images', (c?.Image ?? '').replace('sha256:', ''), 'rootfs');
    assert.throws(() => readFileSync(join(rootfs, 'etc', 'kept')));
    await d.berthOk(['rm', '-f', id]);
    assert.equal(await loopsFor(d.root), '');
  });

  it('a 100m volume ends in ENOSPC at 100m inside a container, and its data outlives it', async () => {
    await d.berthOk(['volume', 'create', '--size', '100m', 'vol100']);
    const r = await d.berth([
      'run',
      '--name',
      'writer',
      '-v',
      'vol100:/data',
      'busybox',
      'sh',
      '-c',
      'echo kept > /data/note; dd if=/dev/zero of=/data/fill bs=1M count=300 2>&1; ls -l /data/fill',
    ]);
    assert.match(r.stdout, /No space left on device/);
    const bytes = Number(r.stdout.trim().split('\n').at(-1)?.trim().split(/\s+/)[4]);
    assert.ok(bytes >= 95 * MIB && bytes <= 100 * MIB, `wrote ${bytes} bytes`);
    // In use by a container (even a stopped one): refused, and nothing lost.
    const busy = await d.berth(['volume', 'rm', 'vol100']);
    assert.equal(busy.code, 125);
    assert.match(busy.stderr, /in use/i);
    await d.berthOk(['rm', 'writer']);
    const out = await d.berthOk([
      'run',
      '--rm',
      '-v',
      'vol100:/data:ro',
      'busybox',
      'cat',
      '/data/note',
    ]);
    assert.equal(out.trim(), 'kept');
    await d.berthOk(['volume', 'rm', 'vol100']);
    assert.deepEqual(mountsUnder(join(d.root, 'volumes')), []);
    assert.equal(await loopsFor(d.root), '');
  });

  it('a kill -9 of berthd between create and start, or during the start, leaves nothing', async () => {
    await d.berthOk(['volume', 'create', '--size', '20m', 'crashvol']);
    const id = (
      await d.berthOk([
        'create',
        '--read-write',
        '--writable-size',
        '32m',
        '-v',
        'crashvol:/data',
        'busybox',
        'sleep',
        '1000',
      ])
    ).trim();
    await d.kill9();
    await d.startProcess();
    const start = d.berth(['start', id]);
    await new Promise((r) => setTimeout(r, 60));
    await d.kill9();
    await start;
    await d.startProcess();
    await d.berthOk(['rm', '-f', id]);
    await d.berthOk(['volume', 'rm', 'crashvol']);
    assert.deepEqual(mountsUnder(d.root), []);
    assert.deepEqual(mountsUnder(d.runRoot), []);
    assert.equal(await loopsFor(d.root), '');
    assert.deepEqual(d.leaks([id]), []);
  });

  it('refuses bad mounts with the field named, and makes nothing', async () => {
    const cases: [string[], RegExp][] = [
      [['-v', '/nonexistent-berth:/x:zz'], /volume/],
      [['--mount', 'type=bind,source=/nonexistent-berth-src,target=/x'], /mounts\[0\]\.source/],
      [['--mount', 'type=nfs,target=/x'], /mounts\[0\]\.type/],
      [['--tmpfs', '/'], /mounts\[0\]\.target/],
      [['--tmpfs', '/a:size=1k'], /mounts\[0\]\.sizeBytes/],
      [['--tmpfs', '/a:mode=99'], /mounts\[0\]\.mode/],
      [['--tmpfs', '/a:exec,noexec'], /contradict/],
      [['--ephemeral'], /ephemeral/],
      [['--read-write', '--writable-size', '1m'], /writableSizeBytes/],
      [['-v', '/data'], /anonymous/],
    ];
    for (const [flags, re] of cases) {
      const r = await d.berth(['create', ...flags, 'busybox', 'true']);
      assert.equal(r.code, 125, flags.join(' '));
      assert.match(r.stderr, re, flags.join(' '));
    }
    const ps = await d.berthOk(['ps', '-aq']);
    assert.equal(ps.trim(), '');
  });
});

describe('storage accounting and the high-water mark', () => {
  it('ps --size and inspect --size show what a container wrote', async () => {
    const d = await TestDaemon.start();
    try {
      const id = await d.runDetached([
        '--read-write',
        '--writable-size',
        '32m',
        'busybox',
        'sh',
        '-c',
        'dd if=/dev/zero of=/big bs=1M count=5; dd if=/dev/zero of=/tmp/t bs=1M count=3; sleep 1000',
      ]);
      let c: { SizeRw: number; SizeRootFs: number; SizeWritableRoot: number; SizeTmpfs: number };
      for (let i = 0; ; i++) {
        c = (JSON.parse(await d.berthOk(['inspect', '--size', id])) as (typeof c)[])[0] as typeof c;
        if (c.SizeTmpfs >= 3 * MIB || i > 100) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(
        c.SizeWritableRoot >= 5 * MIB && c.SizeWritableRoot < 8 * MIB,
        `${c.SizeWritableRoot}`,
      );
      assert.ok(c.SizeTmpfs >= 3 * MIB && c.SizeTmpfs < 4 * MIB, `${c.SizeTmpfs}`);
      assert.equal(c.SizeRw, c.SizeWritableRoot + c.SizeTmpfs);
      assert.ok(c.SizeRootFs > c.SizeRw);
      const ps = await d.berthOk(['ps', '--size']);
      assert.match(ps, /SIZE/);
      assert.match(ps, /MB \(virtual .*MB\)/);
    } finally {
      await d.destroy();
    }
  });

  it('refuses to create a container above the high-water mark, with an event', async () => {
    const d = await TestDaemon.start(['--data-high-water', '1']);
    try {
      const r = await d.berth(['create', 'busybox', 'true']);
      assert.equal(r.code, 125);
      assert.match(r.stderr, /above the high-water mark of 1%/);
      const ev = await d.berthOk([
        'events',
        '--filter',
        'event=disk-high-water',
        '--format',
        'json',
      ]);
      assert.match(ev, /disk-high-water/);
      assert.equal((await d.berthOk(['ps', '-aq'])).trim(), '');
    } finally {
      await d.destroy();
    }
  });
});
