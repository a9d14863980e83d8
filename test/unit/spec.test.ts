import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildProcess, buildSpec, type SpecInput } from '../../src/runtime/spec.ts';

const DOCKER_DEFAULT_CAPS = [
  'CAP_AUDIT_WRITE',
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_MKNOD',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_RAW',
  'CAP_SETFCAP',
  'CAP_SETGID',
  'CAP_SETPCAP',
  'CAP_SETUID',
  'CAP_SYS_CHROOT',
];

function input(over: Partial<SpecInput> = {}): SpecInput {
  return {
    rootfs: '/var/lib/berth/rootfs/abc',
    readonlyRootfs: true,
    args: ['/bin/sh', '-c', 'echo hi'],
    env: ['PATH=/usr/bin:/bin', 'HOME=/root'],
    cwd: '/work',
    uid: 1000,
    gid: 1001,
    additionalGids: [20, 30],
    hostname: 'box',
    terminal: false,
    networkMode: 'none',
    etcFiles: {
      hosts: '/run/berth/c/abc/hosts',
      hostname: '/run/berth/c/abc/hostname',
      resolvConf: '/run/berth/c/abc/resolv.conf',
    },
    cgroupsPath: '/berth/abc',
    pidsLimit: 4096,
    nofileLimit: 65536,
    tmpfs: [],
    shmSizeBytes: 64 * 1024 * 1024,
    ...over,
  };
}

type Mount = ReturnType<typeof buildSpec>['mounts'][number];

function mount(spec: ReturnType<typeof buildSpec>, destination: string): Mount {
  const found = spec.mounts.filter((m) => m.destination === destination);
  assert.equal(found.length, 1, `exactly one mount at ${destination}`);
  return found[0] as Mount;
}

interface Caps {
  bounding: string[];
  effective: string[];
  permitted: string[];
  inheritable?: string[];
  ambient?: string[];
}

describe('buildProcess', () => {
  it('grants exactly Docker’s 14 default capabilities in every set', () => {
    const caps = buildProcess(input()).capabilities as Caps;
    for (const set of [caps.bounding, caps.effective, caps.permitted]) {
      assert.equal(set.length, 14);
      assert.deepEqual([...set].sort(), DOCKER_DEFAULT_CAPS);
      assert.ok(!set.includes('CAP_SYS_ADMIN'));
      assert.ok(!set.includes('CAP_NET_ADMIN'));
      assert.ok(!set.includes('CAP_SYS_PTRACE'));
    }
    assert.equal(caps.inheritable, undefined);
    assert.equal(caps.ambient, undefined);
  });

  it('sets noNewPrivileges and resets oomScoreAdj to 0', () => {
    const p = buildProcess(input());
    assert.equal(p.noNewPrivileges, true);
    assert.equal(p.oomScoreAdj, 0);
  });

  it('carries user, args, env and cwd', () => {
    const p = buildProcess(input());
    assert.deepEqual(p.user, { uid: 1000, gid: 1001, additionalGids: [20, 30] });
    assert.deepEqual(p.args, ['/bin/sh', '-c', 'echo hi']);
    assert.deepEqual(p.env, ['PATH=/usr/bin:/bin', 'HOME=/root']);
    assert.equal(p.cwd, '/work');
    assert.equal(p.terminal, false);
  });

  it('omits additionalGids when there are none', () => {
    const p = buildProcess(input({ additionalGids: [] }));
    assert.deepEqual(p.user, { uid: 1000, gid: 1001 });
  });

  it('sets RLIMIT_NOFILE soft and hard to the given limit', () => {
    const p = buildProcess(input({ nofileLimit: 1234 }));
    assert.deepEqual(p.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 1234, soft: 1234 }]);
  });

  it('sets consoleSize only with a terminal', () => {
    const withTty = buildProcess(input({ terminal: true, consoleSize: [40, 120] }));
    assert.equal(withTty.terminal, true);
    assert.deepEqual(withTty.consoleSize, { height: 40, width: 120 });

    const noTty = buildProcess(input({ terminal: false, consoleSize: [40, 120] }));
    assert.ok(!('consoleSize' in noTty));

    const ttyNoSize = buildProcess(input({ terminal: true }));
    assert.ok(!('consoleSize' in ttyNoSize));
  });

  it('does not share arrays with its input or between capability sets', () => {
    const args = ['a'];
    const p = buildProcess(input({ args }));
    (p.args as string[]).push('b');
    assert.deepEqual(args, ['a']);
    const caps = buildProcess(input()).capabilities as Caps;
    caps.bounding.push('CAP_SYS_ADMIN');
    const again = buildProcess(input()).capabilities as Caps;
    assert.ok(!again.bounding.includes('CAP_SYS_ADMIN'));
  });
});

describe('buildSpec', () => {
  it('uses the same process as buildProcess', () => {
    assert.deepEqual(buildSpec(input()).process, buildProcess(input()));
  });

  it('sets root, readonly flag and hostname', () => {
    const s = buildSpec(input());
    assert.deepEqual(s.root, { path: '/var/lib/berth/rootfs/abc', readonly: true });
    assert.equal(s.hostname, 'box');
    assert.equal(buildSpec(input({ readonlyRootfs: false })).root.readonly, false);
  });

  it('masks and read-only-mounts Docker’s sensitive paths', () => {
    const linux = buildSpec(input()).linux as { maskedPaths: string[]; readonlyPaths: string[] };
    for (const p of [
      '/proc/kcore',
      '/proc/keys',
      '/proc/timer_list',
      '/proc/sched_debug',
      '/proc/acpi',
      '/proc/scsi',
      '/sys/firmware',
    ])
      assert.ok(linux.maskedPaths.includes(p), `masked ${p}`);
    for (const p of ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'])
      assert.ok(linux.readonlyPaths.includes(p), `readonly ${p}`);
  });

  it('unshares pid, ipc, uts, mount and network namespaces by default', () => {
    const ns = (buildSpec(input()).linux.namespaces as { type: string }[]).map((n) => n.type);
    assert.deepEqual([...ns].sort(), ['ipc', 'mount', 'network', 'pid', 'uts']);
    assert.ok(!ns.includes('user'));
  });

  it('shares the host network namespace in host mode only', () => {
    const ns = (
      buildSpec(input({ networkMode: 'host' })).linux.namespaces as { type: string }[]
    ).map((n) => n.type);
    assert.deepEqual([...ns].sort(), ['ipc', 'mount', 'pid', 'uts']);
  });

  it('sets the pids limit, cgroups path and denies all devices by default', () => {
    const linux = buildSpec(input({ pidsLimit: 77 })).linux as {
      cgroupsPath: string;
      resources: { pids: { limit: number }; devices: { allow: boolean; access: string }[] };
    };
    assert.equal(linux.cgroupsPath, '/berth/abc');
    assert.deepEqual(linux.resources.pids, { limit: 77 });
    assert.deepEqual(linux.resources.devices[0], { allow: false, access: 'rwm' });
  });

  it('adds tmpfs mounts with mode and size', () => {
    const s = buildSpec(
      input({
        tmpfs: [
          { path: '/tmp', sizeBytes: 1048576, mode: '1777' },
          { path: '/run', sizeBytes: 2048, mode: '755', options: ['nosuid', 'noexec'] },
        ],
      }),
    );
    const tmp = mount(s, '/tmp');
    assert.equal(tmp.type, 'tmpfs');
    assert.ok(tmp.options.includes('size=1048576'));
    assert.ok(tmp.options.includes('mode=1777'));
    assert.ok(tmp.options.includes('nosuid'));
    assert.ok(tmp.options.includes('nodev'));
    const run = mount(s, '/run');
    assert.deepEqual(run.options, ['nosuid', 'noexec', 'mode=755', 'size=2048']);
  });

  it('sizes /dev/shm from shmSizeBytes', () => {
    const shm = mount(buildSpec(input({ shmSizeBytes: 12345 })), '/dev/shm');
    assert.equal(shm.type, 'tmpfs');
    assert.ok(shm.options.includes('size=12345'));
    assert.ok(shm.options.includes('noexec'));
  });

  it('binds /etc/hosts, /etc/hostname and /etc/resolv.conf read-only from the bundle', () => {
    const s = buildSpec(input());
    const want: [string, string][] = [
      ['/etc/hosts', '/run/berth/c/abc/hosts'],
      ['/etc/hostname', '/run/berth/c/abc/hostname'],
      ['/etc/resolv.conf', '/run/berth/c/abc/resolv.conf'],
    ];
    for (const [dest, src] of want) {
      const m = mount(s, dest);
      assert.equal(m.type, 'bind');
      assert.equal(m.source, src);
      assert.ok(m.options.includes('ro'), `${dest} is read-only`);
      assert.ok(!m.options.includes('rw'));
      assert.ok(m.options.includes('rbind'));
    }
  });

  it('mounts /sys and /sys/fs/cgroup read-only and /proc without exec', () => {
    const s = buildSpec(input());
    assert.ok(mount(s, '/sys').options.includes('ro'));
    assert.ok(mount(s, '/sys/fs/cgroup').options.includes('ro'));
    const proc = mount(s, '/proc');
    assert.equal(proc.type, 'proc');
    assert.ok(proc.options.includes('noexec'));
    assert.ok(proc.options.includes('nosuid'));
  });

  it('mounts a tmpfs over /dev before /dev/pts and /dev/shm', () => {
    const dests = buildSpec(input()).mounts.map((m) => m.destination);
    const dev = dests.indexOf('/dev');
    assert.ok(dev >= 0);
    assert.ok(dev < dests.indexOf('/dev/pts'));
    assert.ok(dev < dests.indexOf('/dev/shm'));
    assert.ok(dests.indexOf('/sys') < dests.indexOf('/sys/fs/cgroup'));
  });
});
