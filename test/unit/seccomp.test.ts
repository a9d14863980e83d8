// The default seccomp profile, the resolver of conditional rules, a user profile's checks,
// and the security parts of the spec and of create's validation.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ALWAYS_REFUSED,
  DEFAULT_PROFILE,
  defaultSeccomp,
  parseProfile,
  resolveProfile,
  type OciSeccomp,
} from '../../src/runtime/seccomp.ts';
import {
  ALL_CAPS,
  DEFAULT_CAPS,
  buildSpec,
  resolveCaps,
  type SpecInput,
  type SpecSecurity,
} from '../../src/runtime/spec.ts';
import { checkSecurity, type SecurityHost } from '../../src/engine/security.ts';
import { parseDevice, securityRequest } from '../../src/cli/security-flags.ts';
import { BerthError } from '../../src/util/errors.ts';

const CLONE_NEWUSER = 0x10000000;
const CLONE_NEWNS = 0x20000;
const CLONE_THREAD_FLAGS = 0x003d0f00; // what glibc's pthread_create passes
const SIGCHLD = 17;

// What the filter answers for a call, the way libseccomp decides for this profile: an
// allowing rule whose arguments all match wins, then an errno rule, then the default.
function decide(p: OciSeccomp, name: string, args: number[] = []): string {
  const matches = (r: OciSeccomp['syscalls'][number]) =>
    r.names.includes(name) &&
    (r.args ?? []).every((a) => {
      const v = args[a.index] ?? 0;
      switch (a.op) {
        case 'SCMP_CMP_EQ':
          return v === a.value;
        case 'SCMP_CMP_NE':
          return v !== a.value;
        case 'SCMP_CMP_LT':
          return v < a.value;
        case 'SCMP_CMP_GT':
          return v > a.value;
        case 'SCMP_CMP_MASKED_EQ':
          return (v & a.value) >>> 0 === a.valueTwo;
        default:
          throw new Error(`op ${a.op}`);
      }
    });
  const hit = p.syscalls.filter(matches);
  if (hit.some((r) => r.action === 'SCMP_ACT_ALLOW')) return 'allow';
  const errno = hit.find((r) => r.action === 'SCMP_ACT_ERRNO');
  if (errno) return `errno ${errno.errnoRet ?? p.defaultErrnoRet}`;
  return p.defaultAction === 'SCMP_ACT_ERRNO' ? `errno ${p.defaultErrnoRet}` : p.defaultAction;
}

const dflt = (caps: readonly string[] = DEFAULT_CAPS, arch = 'x64') =>
  defaultSeccomp({ caps, arch, kernel: '6.1.0' });
const EPERM = 'errno 1';

describe('default seccomp profile', () => {
  it('refuses by default with EPERM, for every ABI of the host', () => {
    const p = dflt();
    assert.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
    assert.equal(p.defaultErrnoRet, 1);
    assert.deepEqual(p.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    assert.deepEqual(dflt(DEFAULT_CAPS, 'arm64').architectures, [
      'SCMP_ARCH_AARCH64',
      'SCMP_ARCH_ARM',
    ]);
    assert.equal(p.flags, undefined);
  });

  it('allows what ordinary programs do', () => {
    const p = dflt();
    for (const n of ['read', 'write', 'openat', 'execve', 'mmap', 'futex', 'rseq', 'epoll_wait'])
      assert.equal(decide(p, n), 'allow', n);
    assert.equal(decide(p, 'clone', [SIGCHLD]), 'allow', 'fork');
    assert.equal(decide(p, 'clone', [CLONE_THREAD_FLAGS]), 'allow', 'threads');
    assert.equal(decide(p, 'unshare', [0x200 /* CLONE_FS */]), 'allow');
    assert.equal(decide(p, 'socket', [2]), 'allow', 'AF_INET');
    assert.equal(decide(p, 'socket', [39]), 'allow', 'AF_NFC');
    assert.equal(decide(p, 'arch_prctl'), 'allow', 'x86_64 only');
    assert.equal(decide(p, 'chroot'), 'allow', 'with the default CAP_SYS_CHROOT');
  });

  it('refuses, without the capabilities, mount, modules, kexec, reboot, keyrings, ptrace, new namespaces, bpf and the rest', () => {
    const p = dflt();
    for (const n of [
      'mount',
      'umount2',
      'fsopen',
      'move_mount',
      'init_module',
      'finit_module',
      'delete_module',
      'kexec_load',
      'kexec_file_load',
      'reboot',
      'keyctl',
      'add_key',
      'request_key',
      'ptrace',
      'process_vm_readv',
      'setns',
      'bpf',
      'perf_event_open',
      'userfaultfd',
      'open_by_handle_at',
      'pivot_root',
      'swapon',
      'swapoff',
      'sethostname',
      'setdomainname',
      'io_uring_setup',
      'syslog',
      'iopl',
      'settimeofday',
    ])
      assert.equal(decide(p, n), EPERM, n);
    assert.equal(decide(p, 'clone', [CLONE_NEWUSER | SIGCHLD]), EPERM, 'clone a user namespace');
    assert.equal(decide(p, 'clone', [CLONE_NEWNS | SIGCHLD]), EPERM, 'clone a mount namespace');
    assert.equal(decide(p, 'unshare', [CLONE_NEWUSER]), EPERM);
    assert.equal(decide(p, 'unshare', [0x80]), EPERM, 'CLONE_NEWTIME');
    assert.equal(decide(p, 'clone3'), 'errno 38', 'ENOSYS: libc falls back to clone');
    assert.equal(decide(p, 'socket', [38]), EPERM, 'AF_ALG');
    assert.equal(decide(p, 'socket', [40]), EPERM, 'AF_VSOCK');
    assert.equal(decide(p, 'personality', [0x0040000]), EPERM, 'ADDR_NO_RANDOMIZE');
    for (const v of [0, 8, 0x20000, 0x20008, 0xffffffff])
      assert.equal(decide(p, 'personality', [v]), 'allow', `personality ${v}`);
  });

  it('allows what a capability makes legitimate, with the capability only', () => {
    const admin = dflt([...DEFAULT_CAPS, 'CAP_SYS_ADMIN']);
    for (const n of ['mount', 'umount2', 'setns', 'sethostname', 'bpf', 'perf_event_open'])
      assert.equal(decide(admin, n), 'allow', n);
    assert.equal(decide(admin, 'clone', [CLONE_NEWUSER]), 'allow');
    assert.equal(decide(admin, 'clone3'), 'allow');
    assert.equal(decide(admin, 'unshare', [CLONE_NEWUSER]), 'allow');
    const one = (cap: string, n: string) => decide(dflt([...DEFAULT_CAPS, cap]), n);
    assert.equal(one('CAP_SYS_PTRACE', 'ptrace'), 'allow');
    assert.equal(one('CAP_SYS_PTRACE', 'process_vm_writev'), 'allow');
    assert.equal(one('CAP_SYS_MODULE', 'finit_module'), 'allow');
    assert.equal(one('CAP_SYS_BOOT', 'reboot'), 'allow');
    assert.equal(one('CAP_SYS_TIME', 'clock_settime'), 'allow');
    assert.equal(one('CAP_DAC_READ_SEARCH', 'open_by_handle_at'), 'allow');
    assert.equal(one('CAP_BPF', 'bpf'), 'allow');
    assert.equal(one('CAP_PERFMON', 'perf_event_open'), 'allow');
    assert.equal(decide(dflt(DEFAULT_CAPS.filter((c) => c !== 'CAP_SYS_CHROOT')), 'chroot'), EPERM);
  });

  it('never allows kexec, keyrings, userfaultfd, swap, pivot_root or io_uring, whatever the capabilities', () => {
    const all = dflt(ALL_CAPS);
    for (const n of ALWAYS_REFUSED) assert.equal(decide(all, n), EPERM, n);
  });

  it('is arch-aware', () => {
    const arm = dflt(DEFAULT_CAPS, 'arm64');
    assert.equal(decide(arm, 'arch_prctl'), EPERM);
    assert.equal(decide(arm, 'set_tls'), 'allow');
    const s390 = resolveProfile(DEFAULT_PROFILE, { caps: DEFAULT_CAPS, arch: 's390x' });
    const clone = s390.syscalls.filter((r) => r.names.includes('clone'));
    assert.deepEqual(
      clone.map((r) => r.args?.[0]?.index),
      [1],
      "s390's clone has its flags second",
    );
  });

  it('goes through the same checks as a user’s profile', () => {
    const again = parseProfile(JSON.stringify(DEFAULT_PROFILE), 'securityOpt[0]');
    assert.deepEqual(
      resolveProfile(again, { caps: DEFAULT_CAPS, arch: 'x64' }),
      dflt(DEFAULT_CAPS),
    );
  });
});

describe('a user’s seccomp profile', () => {
  const bad = (profile: unknown, re: RegExp) =>
    assert.throws(
      () => parseProfile(JSON.stringify(profile), 'securityOpt[0]'),
      (e: unknown) =>
        e instanceof BerthError &&
        e.code === 'INVALID_ARGUMENT' &&
        e.details?.['field'] === 'securityOpt[0]' &&
        re.test(e.message),
    );

  it('takes Docker’s format and OCI’s', () => {
    const oci = parseProfile(
      JSON.stringify({
        defaultAction: 'SCMP_ACT_ALLOW',
        architectures: ['SCMP_ARCH_X86_64'],
        flags: ['SECCOMP_FILTER_FLAG_LOG'],
        syscalls: [
          {
            names: ['mkdir'],
            action: 'SCMP_ACT_ERRNO',
            errnoRet: 13,
            args: [{ index: 0, value: 1, op: 'SCMP_CMP_NE' }],
          },
        ],
      }),
      'f',
    );
    assert.deepEqual(resolveProfile(oci, { caps: [] }), {
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: ['SCMP_ARCH_X86_64'],
      flags: ['SECCOMP_FILTER_FLAG_LOG'],
      syscalls: [
        {
          names: ['mkdir'],
          action: 'SCMP_ACT_ERRNO',
          errnoRet: 13,
          args: [{ index: 0, value: 1, valueTwo: 0, op: 'SCMP_CMP_NE' }],
        },
      ],
    });
    // Docker's single `name`, and its kernel condition.
    const docker = parseProfile(
      JSON.stringify({
        defaultAction: 'SCMP_ACT_ERRNO',
        syscalls: [
          { name: 'ptrace', action: 'SCMP_ACT_ALLOW', includes: { minKernel: '4.8' } },
          { names: ['getpid'], action: 'SCMP_ACT_ALLOW', excludes: { minKernel: '7.0' } },
        ],
      }),
      'f',
    );
    assert.deepEqual(
      resolveProfile(docker, { caps: [], kernel: '6.1.0-13-amd64' }).syscalls.map((s) => s.names),
      [['ptrace'], ['getpid']],
    );
    assert.deepEqual(
      resolveProfile(docker, { caps: [], kernel: '4.4.0' }).syscalls.map((s) => s.names),
      [['getpid']],
    );
  });

  it('refuses what runc would not take, naming the part', () => {
    bad('nope', /not JSON|JSON object/);
    bad([], /must be a JSON object/);
    bad({ syscalls: [] }, /defaultAction/);
    bad({ defaultAction: 'SCMP_ACT_MAYBE' }, /defaultAction: "SCMP_ACT_MAYBE" is not one of/);
    bad({ defaultAction: 'SCMP_ACT_NOTIFY' }, /defaultAction/);
    bad({ defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/x' }, /notification is not supported/);
    bad({ defaultAction: 'SCMP_ACT_ALLOW', extra: 1 }, /extra: unknown field/);
    bad({ defaultAction: 'SCMP_ACT_ALLOW', defaultErrnoRet: 1 }, /defaultErrnoRet/);
    bad({ defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_X'] }, /flags/);
    bad({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['x86_64'] }, /architectures\[0\]/);
    const rule = (r: object) => ({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [r] });
    bad(rule({ action: 'SCMP_ACT_ERRNO' }), /syscalls\[0\]: names no syscall/);
    bad(rule({ names: ['Mkdir;'], action: 'SCMP_ACT_ERRNO' }), /syscalls\[0\]\.names\[0\]/);
    bad(rule({ names: ['mkdir'], action: 'SCMP_ACT_ALLOW', errnoRet: 1 }), /errnoRet/);
    bad(
      rule({ names: ['mkdir'], action: 'SCMP_ACT_ALLOW', args: [{ index: 6, op: 'SCMP_CMP_EQ' }] }),
      /args\[0\]\.index/,
    );
    bad(
      rule({ names: ['mkdir'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, op: 'EQ' }] }),
      /args\[0\]\.op/,
    );
    bad(
      rule({ names: ['mkdir'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['SYS_ADMIN'] } }),
      /includes\.caps\[0\]/,
    );
  });
});

const HOST_PROC = { dir: '' };

describe('security in the spec', () => {
  const input = (security?: SpecSecurity): SpecInput => ({
    rootfs: '/r',
    readonlyRootfs: true,
    args: ['sh'],
    env: [],
    cwd: '/',
    uid: 0,
    gid: 0,
    additionalGids: [],
    hostname: 'h',
    terminal: false,
    networkMode: 'none',
    etcFiles: { hosts: '/h', hostname: '/n', resolvConf: '/r' },
    cgroupsPath: '/berth/x',
    pidsLimit: 100,
    nofileLimit: 1024,
    tmpfs: [],
    shmSizeBytes: 65536,
    ...(security ? { security } : {}),
  });
  const sec = (over: Partial<SpecSecurity> = {}): SpecSecurity => ({
    privileged: false,
    caps: DEFAULT_CAPS,
    noNewPrivileges: true,
    seccomp: dflt(),
    devices: [],
    sysctls: {},
    ...over,
  });
  const mountOpts = (s: ReturnType<typeof buildSpec>, dest: string) =>
    s.mounts.find((m) => m.destination === dest)?.options ?? [];

  it('has the default filter without being told', () => {
    const s = buildSpec(input());
    assert.deepEqual(s.linux['seccomp'], dflt(DEFAULT_CAPS, process.arch));
    assert.equal((s.process as { noNewPrivileges: boolean }).noNewPrivileges, true);
  });

  it('puts the capabilities, no-new-privileges, devices and sysctls where runc reads them', () => {
    const s = buildSpec(
      input(
        sec({
          caps: ['CAP_NET_ADMIN'],
          noNewPrivileges: false,
          seccomp: undefined,
          devices: [
            {
              path: '/dev/mynull',
              type: 'c',
              major: 1,
              minor: 3,
              fileMode: 0o666,
              uid: 0,
              gid: 0,
              access: 'rw',
            },
          ],
          sysctls: { 'kernel.shmmax': '1' },
          hostMaskedPaths: ['/sys/devices/system/cpu/cpu0/thermal_throttle'],
        }),
      ),
    );
    const p = s.process as { capabilities: { bounding: string[] }; noNewPrivileges: boolean };
    assert.deepEqual(p.capabilities.bounding, ['CAP_NET_ADMIN']);
    assert.equal(p.noNewPrivileges, false);
    assert.equal(s.linux['seccomp'], undefined);
    assert.deepEqual(s.linux['devices'], [
      { path: '/dev/mynull', type: 'c', major: 1, minor: 3, fileMode: 0o666, uid: 0, gid: 0 },
    ]);
    const res = s.linux['resources'] as { devices: unknown[] };
    assert.deepEqual(res.devices, [
      { allow: false, access: 'rwm' },
      { allow: true, type: 'c', major: 1, minor: 3, access: 'rw' },
    ]);
    assert.deepEqual(s.linux['sysctl'], { 'kernel.shmmax': '1' });
    assert.ok(
      (s.linux['maskedPaths'] as string[]).includes(
        '/sys/devices/system/cpu/cpu0/thermal_throttle',
      ),
    );
    assert.ok(mountOpts(s, '/sys').includes('ro'));
  });

  it('privileged: writable /sys and cgroups, nothing masked, every device, no filter', () => {
    const s = buildSpec(input(sec({ privileged: true, caps: ALL_CAPS, seccomp: undefined })));
    assert.ok(!mountOpts(s, '/sys').includes('ro'));
    assert.ok(!mountOpts(s, '/sys/fs/cgroup').includes('ro'));
    assert.equal(s.linux['maskedPaths'], undefined);
    assert.equal(s.linux['readonlyPaths'], undefined);
    assert.equal(s.linux['seccomp'], undefined);
    assert.deepEqual((s.linux['resources'] as { devices: unknown[] }).devices, [
      { allow: false, access: 'rwm' },
      { allow: true, access: 'rwm' },
    ]);
  });

  it('masks Docker’s paths', () => {
    const masked = buildSpec(input()).linux['maskedPaths'] as string[];
    for (const p of ['/proc/interrupts', '/proc/keys', '/sys/devices/virtual/powercap'])
      assert.ok(masked.includes(p), p);
  });

  it('follows Docker’s --cap-add/--cap-drop rules', () => {
    assert.deepEqual(resolveCaps([], []), [...DEFAULT_CAPS]);
    assert.ok(!resolveCaps([], ['CAP_CHOWN']).includes('CAP_CHOWN'));
    assert.ok(resolveCaps(['CAP_NET_ADMIN'], []).includes('CAP_NET_ADMIN'));
    assert.deepEqual(resolveCaps(['CAP_NET_ADMIN'], ['ALL']), ['CAP_NET_ADMIN']);
    assert.deepEqual(
      resolveCaps(['ALL'], ['CAP_SYS_ADMIN']),
      ALL_CAPS.filter((c) => c !== 'CAP_SYS_ADMIN'),
    );
    assert.deepEqual(resolveCaps(['ALL'], [], ['CAP_CHOWN']), ['CAP_CHOWN']);
  });
});

describe('create’s security checks', () => {
  let host: SecurityHost;
  before(async () => {
    HOST_PROC.dir = await mkdtemp(join(tmpdir(), 'bt-sec-'));
    await mkdir(join(HOST_PROC.dir, 'self'));
    // A host whose berthd lacks CAP_SYS_RESOURCE (bit 24).
    await writeFile(join(HOST_PROC.dir, 'self/status'), 'CapBnd:\t000001fffeffffff\n');
    host = {
      procRoot: HOST_PROC.dir,
      sysRoot: '/nonexistent',
      devRoot: '/dev',
      arch: 'x64',
      kernel: '6.1',
    };
  });
  after(() => rm(HOST_PROC.dir, { recursive: true, force: true }));

  const check = (req: object, mode: 'bridge' | 'host' | 'none' = 'bridge') =>
    checkSecurity({ image: 'busybox', ...req }, mode, host);
  const refused = async (req: object, field: string, re: RegExp, mode?: 'host') =>
    assert.rejects(
      () => check(req, mode),
      (e: unknown) =>
        e instanceof BerthError &&
        e.code === 'INVALID_ARGUMENT' &&
        e.details?.['field'] === field &&
        re.test(e.message),
    );

  it('keeps the defaults when nothing is asked', async () => {
    assert.deepEqual(await check({}), {
      privileged: false,
      capAdd: [],
      capDrop: [],
      noNewPrivileges: true,
      seccomp: 'default',
      securityOpt: [],
      devices: [],
      sysctls: {},
    });
  });

  it('normalizes capabilities and security options', async () => {
    const s = await check({
      capAdd: ['net_admin', 'CAP_SYS_TIME', 'NET_ADMIN'],
      capDrop: ['all'],
      securityOpt: ['no-new-privileges:false', 'seccomp=unconfined'],
    });
    assert.deepEqual(s.capAdd, ['CAP_NET_ADMIN', 'CAP_SYS_TIME']);
    assert.deepEqual(s.capDrop, ['ALL']);
    assert.equal(s.noNewPrivileges, false);
    assert.equal(s.seccomp, 'unconfined');
    assert.deepEqual(s.securityOpt, ['no-new-privileges=false', 'seccomp=unconfined']);
  });

  it('refuses bad capabilities, options and combinations, naming the field', async () => {
    await refused({ capAdd: ['CAP_FLY'] }, 'capAdd[0]', /"CAP_FLY" is not a capability/);
    await refused({ capAdd: ['SYS_RESOURCE'] }, 'capAdd[0]', /berthd itself does not have/);
    await refused({ capDrop: ['x'] }, 'capDrop[0]', /not a capability/);
    await refused(
      { privileged: true, capDrop: ['NET_RAW'] },
      'capDrop',
      /conflicts with privileged/,
    );
    await refused(
      { privileged: true, securityOpt: ['seccomp={"defaultAction":"SCMP_ACT_ALLOW"}'] },
      'securityOpt[0]',
      /conflicts with privileged/,
    );
    await refused({ securityOpt: ['seccomp=/etc/p.json'] }, 'securityOpt[0]', /profile's JSON/);
    await refused({ securityOpt: ['no-new-privileges=maybe'] }, 'securityOpt[0]', /true or false/);
    await refused({ securityOpt: ['apparmor=unconfined'] }, 'securityOpt[0]', /not supported/);
    await refused(
      { securityOpt: ['seccomp=unconfined', 'seccomp=unconfined'] },
      'securityOpt[1]',
      /given twice/,
    );
  });

  it('takes only namespaced sysctls, and net.* only with a network namespace of its own', async () => {
    const s = await check({
      sysctls: { 'kernel.shmmax': '1', 'fs.mqueue.msg_max': '20', 'net.ipv4.ip_forward': '1' },
    });
    assert.equal(Object.keys(s.sysctls).length, 3);
    await refused({ sysctls: { 'kernel.panic': '1' } }, 'sysctls.kernel.panic', /not namespaced/);
    await refused({ sysctls: { 'vm.swappiness': '1' } }, 'sysctls.vm.swappiness', /not namespaced/);
    await refused(
      { sysctls: { 'net/../../sysrq-trigger': 'h' } },
      'sysctls.net/../../sysrq-trigger',
      /not a sysctl name/,
    );
    await refused({ sysctls: { 'net..x': '1' } }, 'sysctls.net..x', /not a sysctl name/);
    await refused(
      { sysctls: { 'net.ipv4.ip_forward': '1' } },
      'sysctls.net.ipv4.ip_forward',
      /own network namespace/,
      'host',
    );
    await refused({ sysctls: { 'kernel.sem': '1\n2' } }, 'sysctls.kernel.sem', /one line/);
  });

  it('takes host device nodes under /dev, and nothing else', async () => {
    const s = await check({
      devices: [
        { pathOnHost: '/dev/null', pathInContainer: '/dev/mynull', cgroupPermissions: 'rw' },
      ],
    });
    assert.deepEqual(s.devices, [
      { pathOnHost: '/dev/null', pathInContainer: '/dev/mynull', permissions: 'rw' },
    ]);
    assert.equal(
      (await check({ devices: [{ pathOnHost: '/dev/null' }] })).devices[0]?.permissions,
      'rwm',
    );
    await refused(
      { devices: [{ pathOnHost: '/etc/passwd' }] },
      'devices[0].pathOnHost',
      /not a device node/,
    );
    await refused(
      { devices: [{ pathOnHost: '/dev/nope-x' }] },
      'devices[0].pathOnHost',
      /does not exist/,
    );
    await refused({ devices: [{ pathOnHost: 'dev/null' }] }, 'devices[0].pathOnHost', /absolute/);
    await refused(
      { devices: [{ pathOnHost: '/dev/null', pathInContainer: '/etc/null' }] },
      'devices[0].pathInContainer',
      /under \/dev/,
    );
    await refused(
      { devices: [{ pathOnHost: '/dev/null', pathInContainer: '/dev/pts/0' }] },
      'devices[0].pathInContainer',
      /under \/dev/,
    );
    await refused(
      { devices: [{ pathOnHost: '/dev/null', cgroupPermissions: 'rx' }] },
      'devices[0].cgroupPermissions',
      /r, w and m/,
    );
  });
});

describe('CLI security flags', () => {
  it('parses --device as docker does', () => {
    assert.deepEqual(parseDevice('/dev/sda'), { pathOnHost: '/dev/sda' });
    assert.deepEqual(parseDevice('/dev/sda:r'), { pathOnHost: '/dev/sda', cgroupPermissions: 'r' });
    assert.deepEqual(parseDevice('/dev/sda:/dev/xvdc'), {
      pathOnHost: '/dev/sda',
      pathInContainer: '/dev/xvdc',
    });
    assert.deepEqual(parseDevice('/dev/sda:/dev/xvdc:rm'), {
      pathOnHost: '/dev/sda',
      pathInContainer: '/dev/xvdc',
      cgroupPermissions: 'rm',
    });
    assert.throws(() => parseDevice('/a:/b:c:d'), /Invalid device/);
  });

  it('reads a seccomp profile file and sends its JSON', () => {
    const flags = {
      privileged: false,
      capAdd: [],
      capDrop: [],
      device: [],
      sysctl: ['kernel.shmmax=1'],
      securityOpt: ['seccomp=/p.json', 'seccomp=unconfined', 'no-new-privileges'],
    };
    const files: Record<string, string> = { '/p.json': '{ "defaultAction": "SCMP_ACT_ALLOW" }' };
    const read = (p: string) => {
      const t = files[p];
      if (t === undefined) throw Object.assign(new Error('no'), { code: 'ENOENT' });
      return t;
    };
    assert.deepEqual(securityRequest(flags, read), {
      securityOpt: [
        'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}',
        'seccomp=unconfined',
        'no-new-privileges',
      ],
      sysctls: { 'kernel.shmmax': '1' },
    });
    assert.throws(
      () => securityRequest({ ...flags, securityOpt: ['seccomp=/missing.json'] }, read),
      /Invalid security-opt: seccomp profile \/missing.json: ENOENT/,
    );
    files['/bad.json'] = '{';
    assert.throws(
      () => securityRequest({ ...flags, securityOpt: ['seccomp=/bad.json'] }, read),
      /is not JSON/,
    );
    assert.throws(() => securityRequest({ ...flags, sysctl: ['=1'] }, read), /Invalid sysctl/);
  });
});
