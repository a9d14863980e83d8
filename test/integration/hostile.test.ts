// A hostile container: from inside a default container (busybox, and a small static
// program for the syscalls busybox has no applet for), every way out that issue 9 names
// is tried. Each is refused, and the host is checked afterwards for any sign that it
// happened. Then each security flag is shown to do what it says, and no more.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { runCommand, TestDaemon, waitFor } from '../helpers/daemon.ts';

// One syscall per run, named on the command line; prints "OP: ok" or "OP: ERRNO-NAME".
// Static, so it runs in busybox's root. gcc and libc6-dev are in scripts/install.sh.
const HOSTILE_C = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *op = argv[1];
  const char *arg = argc > 2 ? argv[2] : "";
  char zero[256];
  long rc;
  memset(zero, 0, sizeof zero);
  if (!strcmp(op, "add_key")) rc = syscall(SYS_add_key, "user", arg, "x", 1, -2);
  else if (!strcmp(op, "keyctl")) rc = syscall(SYS_keyctl, 0, -4, 0);
  else if (!strcmp(op, "ptrace")) rc = ptrace(PTRACE_ATTACH, atoi(arg), 0, 0);
  else if (!strcmp(op, "finit_module")) rc = syscall(SYS_finit_module, open("/dev/null", O_RDONLY), "", 0);
  else if (!strcmp(op, "init_module")) rc = syscall(SYS_init_module, zero, sizeof zero, "");
  else if (!strcmp(op, "delete_module")) rc = syscall(SYS_delete_module, "ext4", O_NONBLOCK);
  else if (!strcmp(op, "unshare_user")) rc = unshare(CLONE_NEWUSER);
  else if (!strcmp(op, "unshare_fs")) rc = unshare(CLONE_FS);
  else if (!strcmp(op, "clone_user") || !strcmp(op, "fork")) {
    rc = syscall(SYS_clone, (!strcmp(op, "fork") ? 0 : CLONE_NEWUSER) | SIGCHLD, 0, 0, 0, 0);
    if (rc == 0) syscall(SYS_exit, 0);
    if (rc > 0) waitpid(rc, 0, 0);
  } else if (!strcmp(op, "clone3")) {
    unsigned long long a[11];
    memset(a, 0, sizeof a);
    a[0] = CLONE_NEWUSER;
    a[4] = SIGCHLD;
    rc = syscall(SYS_clone3, a, sizeof a);
    if (rc == 0) syscall(SYS_exit, 0);
    if (rc > 0) waitpid(rc, 0, 0);
  } else if (!strcmp(op, "setns")) rc = setns(open(arg, O_RDONLY), 0);
  else if (!strcmp(op, "kexec_load")) rc = syscall(SYS_kexec_load, 0, 0, 0, 0);
  /* LINUX_REBOOT_CMD_CAD_OFF: harmless even where it were allowed. */
  else if (!strcmp(op, "reboot")) rc = syscall(SYS_reboot, 0xfee1dead, 672274793, 0, 0);
  else if (!strcmp(op, "bpf")) rc = syscall(SYS_bpf, 0, zero, 64);
  else if (!strcmp(op, "perf_event_open")) rc = syscall(SYS_perf_event_open, zero, 0, -1, -1, 0);
  else if (!strcmp(op, "userfaultfd")) rc = syscall(SYS_userfaultfd, 0);
  else if (!strcmp(op, "open_by_handle_at")) rc = syscall(SYS_open_by_handle_at, AT_FDCWD, zero, O_RDONLY);
  else if (!strcmp(op, "pivot_root")) rc = syscall(SYS_pivot_root, "/tmp", "/tmp");
  else if (!strcmp(op, "swapon")) rc = syscall(SYS_swapon, "/dev/null", 0);
  else if (!strcmp(op, "mount")) rc = mount(arg, "/tmp", "tmpfs", 0, "");
  else if (!strcmp(op, "personality")) rc = personality(strtoul(arg, 0, 0));
  else if (!strcmp(op, "socket")) rc = socket(atoi(arg), SOCK_STREAM, 0);
  else if (!strcmp(op, "io_uring_setup")) rc = syscall(SYS_io_uring_setup, 1, zero);
  else if (!strcmp(op, "sethostname")) rc = sethostname(arg, strlen(arg));
  else { fprintf(stderr, "unknown op %s\n", op); return 2; }
  if (rc < 0) { printf("%s: %s\n", op, strerrorname_np(errno)); return 1; }
  printf("%s: ok\n", op);
  return 0;
}
`;

interface Inspect {
  Id: string;
  State: { Pid: number; Running: boolean };
  HostConfig: {
    Privileged: boolean;
    CapAdd: string[] | null;
    CapDrop: string[] | null;
    SecurityOpt: string[] | null;
    Devices: { PathOnHost: string; PathInContainer: string; CgroupPermissions: string }[];
    Sysctls?: Record<string, string>;
    NoNewPrivileges: boolean;
    Seccomp: string;
  };
}

const read = (p: string) => readFileSync(p, 'utf8');
const tryRead = (p: string) => (existsSync(p) ? read(p) : undefined);

// "OP: RESULT" lines of the helper, as a map.
function results(out: string): Record<string, string> {
  const m: Record<string, string> = {};
  for (const l of out.split('\n')) {
    const i = l.indexOf(': ');
    if (i > 0) m[l.slice(0, i)] = l.slice(i + 2).trim();
  }
  return m;
}

// A kernel file the container must not be able to change, and a value to try: the first of
// these the host has (all harmless to change for a moment; restored if the test fails).
function pickWritable(candidates: readonly string[]): { path: string; value: string } {
  for (const path of candidates) {
    const v = tryRead(path)?.trim();
    if (v !== undefined && /^\d+$/.test(v)) return { path, value: String(Number(v) + 1) };
  }
  throw new Error(`none of ${candidates.join(', ')} on this host`);
}

function restoreIfChanged(path: string, before: string): void {
  if (tryRead(path) !== before) writeFileSync(path, before);
}

// A block device of the host's, as [MAJOR:MINOR, name]: a disk rather than a loop device
// (major 7) where there is one.
function hostBlockDevice(): [string, string] {
  const all = readdirSync('/sys/dev/block').sort(
    (a, b) => Number(a.startsWith('7:')) - Number(b.startsWith('7:')),
  );
  const dev = all[0];
  assert.ok(dev, 'the host has a block device');
  return [dev, readlinkSync(`/sys/dev/block/${dev}`).split('/').pop() ?? ''];
}

function cgroupProcs(id: string): number[] {
  for (const base of ['/sys/fs/cgroup/pids/berth', '/sys/fs/cgroup/berth']) {
    const f = join(base, id, 'cgroup.procs');
    if (existsSync(f)) return read(f).split('\n').filter(Boolean).map(Number);
  }
  return [];
}

describe('a hostile default container: every way out is refused, and the host is unchanged', () => {
  let d: TestDaemon;
  let dir: string;
  let attacker: string; // a default container the attacks run in
  let victim: string; // another container, whose files the attacker goes for
  let victimPid = 0;
  const secret = `secret-${randomBytes(6).toString('hex')}`;
  const marker = `berth-hostile-${randomBytes(4).toString('hex')}`;
  let hostSleeper: ChildProcess | undefined;

  before(async () => {
    d = await TestDaemon.start();
    dir = await mkdtemp('/tmp/bt-hostile-');
    await writeFile(join(dir, 'hostile.c'), HOSTILE_C);
    const cc = await runCommand('/usr/bin/gcc', [
      '-static',
      '-O1',
      '-o',
      join(dir, 'hostile'),
      join(dir, 'hostile.c'),
    ]);
    assert.equal(cc.code, 0, `gcc -static (install.sh installs gcc and libc6-dev): ${cc.stderr}`);
    // Something insmod can be given: the kernel is never asked to parse it.
    await writeFile(join(dir, 'evil.ko'), randomBytes(512));
    attacker = await d.runDetached([
      '--network',
      'none',
      '-v',
      `${dir}:/t:ro`,
      'busybox',
      'sleep',
      '3600',
    ]);
    victim = await d.runDetached([
      '--network',
      'none',
      'busybox',
      'sh',
      '-c',
      `echo ${secret} > /tmp/marker; exec sleep 3600`,
    ]);
    await waitFor(async () => {
      victimPid = (await d.inspect<Inspect>(victim)).State.Pid;
      return victimPid > 0 && tryRead(`/proc/${victimPid}/root/tmp/marker`)?.trim() === secret;
    });
    hostSleeper = spawn('/bin/sleep', ['600'], { stdio: 'ignore' });
  });

  after(async () => {
    hostSleeper?.kill('SIGKILL');
    await d.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  // Runs a script in the attacker, as an exec (same privileges as its init: checked below).
  const attack = (script: string) => d.berth(['exec', attacker, 'sh', '-c', script]);
  const hostile = async (...ops: string[]) =>
    results((await attack(ops.map((o) => `/t/hostile ${o}`).join('; '))).stdout);

  it('runs confined: a seccomp filter, no-new-privileges and Docker’s capabilities, the same in exec as in init', async () => {
    const pid1 = (await attack('grep -E "^(Seccomp|NoNewPrivs|CapEff|CapBnd):" /proc/1/status'))
      .stdout;
    const self = (await attack('grep -E "^(Seccomp|NoNewPrivs|CapEff|CapBnd):" /proc/self/status'))
      .stdout;
    assert.match(pid1, /Seccomp:\s+2/);
    assert.match(pid1, /NoNewPrivs:\s+1/);
    // Docker's 14 default capabilities, and no CAP_SYS_ADMIN (bit 21).
    assert.match(pid1, /CapEff:\s+00000000a80425fb/);
    assert.equal(self, pid1, 'an exec gets exactly what the init has');
    const i = await d.inspect<Inspect>(attacker);
    assert.equal(i.HostConfig.Privileged, false);
    assert.equal(i.HostConfig.NoNewPrivileges, true);
    assert.equal(i.HostConfig.Seccomp, 'default');
  });

  it('cannot mount (tmpfs, proc, bind, or by syscall); no mount table gains one', async () => {
    const r = await attack(
      [
        `mkdir -p /tmp/m && mount -t tmpfs ${marker} /tmp/m; echo tmpfs=$?`,
        `mount -t proc ${marker} /tmp/m; echo proc=$?`,
        'mount --bind / /tmp/m; echo bind=$?',
        `/t/hostile mount ${marker}`,
        'umount /proc; echo umount=$?',
      ].join('; '),
    );
    assert.match(r.stdout, /tmpfs=[1-9]/);
    assert.match(r.stdout, /proc=[1-9]/);
    assert.match(r.stdout, /bind=[1-9]/);
    assert.match(r.stdout, /umount=[1-9]/);
    assert.equal(results(r.stdout)['mount'], 'EPERM');
    const pid = (await d.inspect<Inspect>(attacker)).State.Pid;
    for (const table of ['/proc/1/mountinfo', '/proc/self/mountinfo', `/proc/${pid}/mountinfo`])
      assert.ok(!read(table).includes(marker), `${table} has no mount of the container's`);
    assert.match(read(`/proc/${pid}/mountinfo`), / \/proc .* proc /, "the container's /proc stays");
  });

  it('cannot load or remove kernel modules', async () => {
    const before = tryRead('/proc/modules');
    const r = await attack('insmod /t/evil.ko; echo insmod=$?; rmmod ext4; echo rmmod=$?');
    assert.match(r.stdout, /insmod=[1-9]/);
    assert.match(r.stdout, /rmmod=[1-9]/);
    // EPERM from the filter: a kernel without module support would say ENOSYS.
    assert.deepEqual(await hostile('finit_module', 'init_module', 'delete_module'), {
      finit_module: 'EPERM',
      init_module: 'EPERM',
      delete_module: 'EPERM',
    });
    assert.equal(tryRead('/proc/modules'), before, 'the host has the same modules');
  });

  it('has no host block device, and cannot read one through a node of its own', async () => {
    const r = await attack('find /dev -type b; ls /dev');
    assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('/dev/')).length, 0);
    // runc's standard devices only (fd, stdin, ... are symlinks; pts, shm, mqueue mounts).
    const names = r.stdout.split('\n').filter(Boolean).sort();
    for (const n of names)
      assert.ok(
        [
          'console',
          'core',
          'fd',
          'full',
          'mqueue',
          'null',
          'ptmx',
          'pts',
          'random',
          'shm',
          'stderr',
          'stdin',
          'stdout',
          'tty',
          'urandom',
          'zero',
        ].includes(n),
        `unexpected /dev/${n}`,
      );
    // CAP_MKNOD makes the node (as in Docker); the device cgroup refuses to open it.
    const [major, minor] = hostBlockDevice()[0].split(':');
    const rd = await attack(
      `mknod /dev/hostdisk b ${major} ${minor}; dd if=/dev/hostdisk of=/dev/null bs=512 count=1; echo dd=$?; rm -f /dev/hostdisk`,
    );
    assert.match(rd.stdout, /dd=[1-9]/);
    assert.match(rd.stderr, /Operation not permitted/);
  });

  it('cannot write /proc/sysrq-trigger, /proc/sys or /sys; the host’s values stay', async () => {
    const procSys = pickWritable(['/proc/sys/vm/stat_interval', '/proc/sys/kernel/msgmax']);
    const sys = pickWritable([
      '/sys/kernel/mm/ksm/pages_to_scan',
      '/sys/kernel/mm/transparent_hugepage/khugepaged/pages_to_scan',
      '/sys/kernel/rcu_expedited',
    ]);
    const before = { procSys: read(procSys.path), sys: read(sys.path) };
    const sysrq = existsSync('/proc/sysrq-trigger');
    const dmesgSysrq = async () =>
      (await runCommand('/usr/bin/dmesg', [])).stdout.split('\n').filter((l) => /sysrq/i.test(l))
        .length;
    const sysrqBefore = sysrq ? await dmesgSysrq() : 0;
    try {
      const r = await attack(
        [
          // h only prints the help, were it ever to get through.
          'echo h > /proc/sysrq-trigger; echo sysrq=$?',
          `echo ${procSys.value} > ${procSys.path}; echo procsys=$?`,
          `echo ${sys.value} > ${sys.path}; echo sys=$?`,
          'echo 1 > /sys/kernel/uevent_helper; echo uevent=$?',
          'mkdir /sys/fs/cgroup/pids/evil; echo cgroup=$?',
          'echo $$ > /sys/fs/cgroup/pids/cgroup.procs; echo procs=$?',
        ].join('; '),
      );
      for (const k of ['sysrq', 'procsys', 'sys', 'uevent', 'cgroup', 'procs'])
        assert.match(r.stdout, new RegExp(`${k}=[1-9]`), k);
      assert.match(r.stderr, /Read-only file system/);
      assert.equal(read(procSys.path), before.procSys, `${procSys.path} unchanged`);
      assert.equal(read(sys.path), before.sys, `${sys.path} unchanged`);
      if (sysrq) assert.equal(await dmesgSysrq(), sysrqBefore, 'no sysrq was handled');
      assert.ok(!existsSync(`/sys/fs/cgroup/pids/berth/${attacker}/evil`));
    } finally {
      restoreIfChanged(procSys.path, before.procSys);
      restoreIfChanged(sys.path, before.sys);
    }
  });

  it('sees only its own processes and cannot ptrace any, nor enter the host’s namespaces', async () => {
    const host = hostSleeper?.pid ?? 0;
    assert.ok(host > 0);
    const r = await attack(
      [
        'cat /proc/1/cmdline | tr "\\0" " "; echo',
        'ls /proc | grep -c "^[0-9]"',
        `test -e /proc/${host}; echo hostpid=$?`,
        `test -e /proc/${d.pid}; echo berthd=$?`,
        `kill -0 ${host}; echo kill=$?`,
        `/t/hostile ptrace ${host}`,
        'sleep 60 & /t/hostile ptrace $!; kill $!',
        'nsenter -t 1 -m -u -n true; echo nsenter=$?',
        '/t/hostile setns /proc/1/ns/mnt',
      ].join('; '),
    );
    const lines = r.stdout.split('\n');
    assert.equal(lines[0]?.trim(), 'sleep 3600', "pid 1 is the container's own init");
    assert.ok(Number(lines[1]) < 10, `only the container's processes: ${lines[1]}`);
    assert.match(r.stdout, /hostpid=1/);
    assert.match(r.stdout, /berthd=1/);
    assert.match(r.stdout, /kill=1/);
    assert.match(r.stdout, /nsenter=[1-9]/);
    assert.ok(!/ptrace: ok/.test(r.stdout), r.stdout);
    assert.match(r.stdout, /ptrace: EPERM\n.*ptrace: EPERM/s);
    assert.equal(results(r.stdout)['setns'], 'EPERM');
    for (const pid of [host, d.pid, (await d.inspect<Inspect>(attacker)).State.Pid])
      assert.match(read(`/proc/${pid}/status`), /TracerPid:\s+0\n/, `pid ${pid} is not traced`);
  });

  it('cannot create a user namespace (unshare, clone, clone3); only namespace-free unshare and fork work', async () => {
    const r = await attack('unshare -U true; echo unshare=$?; unshare -r -U id; echo unshare_r=$?');
    assert.match(r.stdout, /unshare=[1-9]/);
    assert.match(r.stdout, /unshare_r=[1-9]/);
    assert.deepEqual(await hostile('unshare_user', 'clone_user', 'clone3', 'unshare_fs', 'fork'), {
      unshare_user: 'EPERM',
      clone_user: 'EPERM',
      // clone3's flags are out of a filter's reach: ENOSYS sends libc back to clone(2).
      clone3: 'ENOSYS',
      unshare_fs: 'ok',
      fork: 'ok',
    });
    // From the host: every process of the container is in the user namespace its init is.
    const init = (await d.inspect<Inspect>(attacker)).State.Pid;
    const ns = readlinkSync(`/proc/${init}/ns/user`);
    for (const p of cgroupProcs(attacker))
      assert.equal(tryReadlink(`/proc/${p}/ns/user`) ?? ns, ns, `pid ${p}`);
  });

  it('cannot use the kernel keyrings, which are not namespaced', async () => {
    assert.deepEqual(await hostile(`add_key ${marker}`, 'keyctl'), {
      add_key: 'EPERM',
      keyctl: 'EPERM',
    });
    assert.ok(!read('/proc/keys').includes(marker), 'no key made it to the host');
  });

  it('cannot change the host’s hostname; with CAP_SYS_ADMIN only its own', async () => {
    const before = { name: hostname(), proc: read('/proc/sys/kernel/hostname') };
    const r = await attack('hostname evil; echo hostname=$?; hostname');
    assert.match(r.stdout, /hostname=[1-9]/);
    assert.equal(
      results((await attack('/t/hostile sethostname evil')).stdout)['sethostname'],
      'EPERM',
    );
    const own = await d.berth([
      'run',
      '--rm',
      '--network',
      'none',
      '--cap-add',
      'SYS_ADMIN',
      'busybox',
      'sh',
      '-c',
      'hostname evil-but-own && hostname',
    ]);
    assert.equal(own.code, 0, own.stderr);
    assert.equal(own.stdout.trim(), 'evil-but-own', 'its own UTS namespace');
    assert.equal(hostname(), before.name);
    assert.equal(read('/proc/sys/kernel/hostname'), before.proc);
  });

  it('cannot reach another container’s files (its root, its tmpfs)', async () => {
    const r = await attack(
      [
        `test -e /proc/${victimPid}; echo proc=$?`,
        `cat /proc/${victimPid}/root/tmp/marker; echo cat=$?`,
        `echo pwned > /proc/${victimPid}/root/tmp/marker; echo write=$?`,
        `grep -rs ${secret} /tmp /run /var/tmp /dev/shm; echo grep=$?`,
        `ls ${d.root} ${d.runRoot}; echo ls=$?`,
      ].join('; '),
    );
    assert.match(r.stdout, /proc=1/);
    assert.match(r.stdout, /cat=1/);
    assert.match(r.stdout, /write=[1-9]/);
    assert.match(r.stdout, /grep=1/);
    assert.match(r.stdout, /ls=[1-9]/);
    assert.ok(!r.stdout.includes(secret));
    assert.equal(read(`/proc/${victimPid}/root/tmp/marker`).trim(), secret, 'unchanged');
  });

  it('is refused the rest of what the profile leaves out', async () => {
    assert.deepEqual(
      await hostile(
        'kexec_load',
        'reboot',
        'bpf',
        'perf_event_open',
        'userfaultfd',
        'open_by_handle_at',
        'pivot_root',
        'swapon',
        'io_uring_setup',
        'socket 40',
      ),
      {
        kexec_load: 'EPERM',
        reboot: 'EPERM',
        bpf: 'EPERM',
        perf_event_open: 'EPERM',
        userfaultfd: 'EPERM',
        open_by_handle_at: 'EPERM',
        pivot_root: 'EPERM',
        swapon: 'EPERM',
        io_uring_setup: 'EPERM',
        socket: 'EPERM',
      },
    );
    // personality(2): the query and plain Linux, never ADDR_NO_RANDOMIZE.
    assert.equal(
      results((await attack('/t/hostile personality 0x0040000')).stdout)['personality'],
      'EPERM',
    );
    assert.equal(
      results((await attack('/t/hostile personality 0xffffffff')).stdout)['personality'],
      'ok',
    );
    assert.equal(results((await attack('/t/hostile socket 2')).stdout)['socket'], 'ok');
  });

  it('masks kernel files and mounts /sys read-only', async () => {
    const masked = [
      '/proc/timer_list',
      '/proc/sched_debug',
      '/proc/interrupts',
      '/proc/keys',
    ].filter((p) => existsSync(p));
    assert.ok(masked.length > 0);
    const r = await attack(
      [
        ...masked.map((p) => `echo ${p}=$(wc -c < ${p})`),
        'grep -E " /sys (ro|rw)," /proc/self/mountinfo',
      ].join('; '),
    );
    for (const p of masked) assert.match(r.stdout, new RegExp(`${p}=0\\b`), `${p} is masked`);
    assert.match(r.stdout, / \/sys ro,/);
  });
});

function tryReadlink(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined;
  }
}

describe('security flags, end to end', () => {
  let d: TestDaemon;
  let dir: string;
  before(async () => {
    d = await TestDaemon.start();
    dir = await mkdtemp('/tmp/bt-secflags-');
  });
  after(async () => {
    await d.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  const run = (flags: string[], script: string) =>
    d.berth(['run', '--rm', '--network', 'none', ...flags, 'busybox', 'sh', '-c', script]);
  const count = async () =>
    (await d.berthOk(['ps', '-a', '-q'])).split('\n').filter(Boolean).length;

  it('--cap-add NET_ADMIN allows changing the network; without it, refused', async () => {
    const script = 'ip addr add 10.99.0.1/32 dev lo && ip addr show lo | grep -c 10.99.0.1';
    const no = await run([], script);
    assert.notEqual(no.code, 0);
    const yes = await run(['--cap-add', 'net_admin'], script);
    assert.equal(yes.code, 0, yes.stderr);
    assert.equal(yes.stdout.trim(), '1');
    const id = await d.runDetached([
      '--cap-add',
      'NET_ADMIN',
      '--cap-add',
      'CAP_SYS_TIME',
      'busybox',
      'true',
    ]);
    const i = await d.inspect<Inspect>(id);
    assert.deepEqual(i.HostConfig.CapAdd, ['CAP_NET_ADMIN', 'CAP_SYS_TIME']);
    assert.equal(i.HostConfig.CapDrop, null);
  });

  it('--cap-drop takes a capability away, ALL takes every one, in exec too', async () => {
    const chown = await run(['--cap-drop', 'CHOWN'], 'touch /tmp/f && chown 1 /tmp/f');
    assert.notEqual(chown.code, 0);
    assert.match(chown.stderr, /Operation not permitted/);
    const id = await d.runDetached(['--cap-drop', 'ALL', 'busybox', 'sleep', '60']);
    const init = await d.berthOk(['exec', id, 'grep', 'CapEff', '/proc/1/status']);
    const exec = await d.berthOk(['exec', id, 'grep', 'CapEff', '/proc/self/status']);
    assert.match(init, /CapEff:\s+0000000000000000/);
    assert.equal(exec, init, 'an exec has no more than the container');
    assert.deepEqual((await d.inspect<Inspect>(id)).HostConfig.CapDrop, ['ALL']);
    await d.berthOk(['rm', '-f', id]);
  });

  it('--privileged: mount, every capability, host devices, writable /sys; loud in the CLI, inspect and events', async () => {
    const disk = hostBlockDevice()[1];
    const r = await d.berth([
      'run',
      '-d',
      '--network',
      'none',
      '--privileged',
      'busybox',
      'sleep',
      '60',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /WARNING: --privileged/);
    const id = r.stdout.trim();
    const out = await d.berthOk([
      'exec',
      id,
      'sh',
      '-c',
      `mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mounted; umount /tmp/m; grep -E "^(Seccomp|CapEff):" /proc/self/status; grep -E " /sys (ro|rw)," /proc/self/mountinfo; test -b /dev/${disk} && echo has-disk`,
    ]);
    assert.match(out, /mounted/);
    assert.match(out, /Seccomp:\s+0/);
    assert.match(out, / \/sys rw,/);
    if (existsSync(`/dev/${disk}`)) assert.match(out, /has-disk/, `the host's /dev/${disk}`);
    const i = await d.inspect<Inspect>(id);
    assert.equal(i.HostConfig.Privileged, true);
    assert.equal(i.HostConfig.Seccomp, 'unconfined');
    const evs = await d.journal(id);
    for (const action of ['create', 'start'])
      assert.equal(
        evs.find((e) => e.action === action)?.attributes['privileged'],
        'true',
        `${action} event says privileged`,
      );
    await d.berthOk(['rm', '-f', id]);
    // A plain container's events do not.
    const plain = await d.runDetached(['busybox', 'true']);
    assert.equal(
      (await d.journal(plain)).find((e) => e.action === 'create')?.attributes['privileged'],
      undefined,
    );
  });

  it('--privileged with --cap-drop, or a profile, is refused; nothing is created', async () => {
    const before = await count();
    const drop = await d.berth(['create', '--privileged', '--cap-drop', 'NET_RAW', 'busybox']);
    assert.equal(drop.code, 125);
    assert.match(drop.stderr, /capDrop/);
    const bogus = await d.berth(['create', '--cap-add', 'CAP_FLY', 'busybox']);
    assert.equal(bogus.code, 125);
    assert.match(bogus.stderr, /Invalid capAdd\[0\]: "CAP_FLY" is not a capability/);
    assert.equal(await count(), before);
  });

  it('seccomp=unconfined allows what the profile refuses', async () => {
    const script = 'unshare -U true && echo userns-made; grep Seccomp: /proc/self/status';
    const dflt = await run([], script);
    assert.doesNotMatch(dflt.stdout, /userns-made/);
    const r = await run(['--security-opt', 'seccomp=unconfined'], script);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /userns-made/);
    assert.match(r.stdout, /Seccomp:\s+0/);
    const id = await d.runDetached(['--security-opt', 'seccomp=unconfined', 'busybox', 'true']);
    const i = await d.inspect<Inspect>(id);
    assert.deepEqual(i.HostConfig.SecurityOpt, ['seccomp=unconfined']);
    assert.equal(i.HostConfig.Seccomp, 'unconfined');
  });

  it('seccomp=PROFILE.json applies a profile of the user’s; a bad one is refused naming the field', async () => {
    const file = join(dir, 'no-mkdir.json');
    await writeFile(
      file,
      JSON.stringify({
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }],
      }),
    );
    const r = await run(['--security-opt', `seccomp=${file}`], 'mkdir /tmp/x; echo mkdir=$?');
    assert.match(r.stdout, /mkdir=1/);
    assert.match(r.stderr, /Permission denied/);
    const id = await d.runDetached(['--security-opt', `seccomp=${file}`, 'busybox', 'true']);
    const i = await d.inspect<Inspect>(id);
    assert.match(
      i.HostConfig.SecurityOpt?.[0] ?? '',
      /^seccomp=\{"defaultAction":"SCMP_ACT_ALLOW"/,
    );
    assert.equal(i.HostConfig.Seccomp, 'custom');

    const before = await count();
    const badFile = join(dir, 'bad.json');
    await writeFile(badFile, JSON.stringify({ defaultAction: 'SCMP_ACT_MAYBE', syscalls: [] }));
    const bad = await d.berth(['create', '--security-opt', `seccomp=${badFile}`, 'busybox']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /Invalid securityOpt\[0\]: seccomp profile defaultAction/);
    const missing = await d.berth([
      'create',
      '--security-opt',
      'seccomp=/nonexistent.json',
      'busybox',
    ]);
    assert.equal(missing.code, 125);
    assert.match(
      missing.stderr,
      /Invalid security-opt: seccomp profile \/nonexistent.json: ENOENT/,
    );
    const unknown = await d.berth(['create', '--security-opt', 'apparmor=unconfined', 'busybox']);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /securityOpt\[0\]: apparmor is not supported/);
    assert.equal(await count(), before);
  });

  it('no-new-privileges is on by default; no-new-privileges=false turns it off', async () => {
    assert.match((await run([], 'grep NoNewPrivs /proc/self/status')).stdout, /NoNewPrivs:\s+1/);
    const off = await run(
      ['--security-opt', 'no-new-privileges=false'],
      'grep NoNewPrivs /proc/self/status',
    );
    assert.match(off.stdout, /NoNewPrivs:\s+0/);
    const on = await run(
      ['--security-opt', 'no-new-privileges'],
      'grep NoNewPrivs /proc/self/status',
    );
    assert.match(on.stdout, /NoNewPrivs:\s+1/);
  });

  it('--sysctl sets a namespaced sysctl in the container only; others are refused naming the field', async () => {
    const host = read('/proc/sys/kernel/shmmax');
    const r = await run(
      ['--sysctl', 'kernel.shmmax=123456789', '--sysctl', 'net.ipv4.ip_forward=1'],
      'cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '123456789\n1\n');
    assert.equal(read('/proc/sys/kernel/shmmax'), host, "the host's value stays");
    const id = await d.runDetached(['--sysctl', 'kernel.shmmax=123456789', 'busybox', 'true']);
    assert.deepEqual((await d.inspect<Inspect>(id)).HostConfig.Sysctls, {
      'kernel.shmmax': '123456789',
    });

    const before = await count();
    const panic = await d.berth(['create', '--sysctl', 'kernel.panic=1', 'busybox']);
    assert.equal(panic.code, 125);
    assert.match(panic.stderr, /Invalid sysctls\.kernel\.panic: kernel\.panic is not namespaced/);
    const hostNet = await d.berth([
      'create',
      '--network',
      'host',
      '--sysctl',
      'net.ipv4.ip_forward=1',
      'busybox',
    ]);
    assert.equal(hostNet.code, 125);
    assert.match(hostNet.stderr, /Invalid sysctls\.net\.ipv4\.ip_forward: .*own network namespace/);
    const escape = await d.berth(['create', '--sysctl', 'net/../../sysrq-trigger=h', 'busybox']);
    assert.equal(escape.code, 125);
    assert.equal(await count(), before);
  });

  it('--device gives a host device node, with its permissions; a non-device is refused', async () => {
    const r = await run(
      ['--device', '/dev/null:/dev/mynull'],
      'echo x > /dev/mynull && echo wrote-null; ls -l /dev/mynull',
    );
    assert.match(r.stdout, /wrote-null/);
    assert.match(r.stdout, /^c.* 1, +3 .*\/dev\/mynull$/m);
    // Read-only: a device outside runc's standard ones (those are always rwm). The device
    // cgroup answers EPERM before the driver is asked anything.
    const ro = ['/dev/hwrng', '/dev/vcs'].find((p) => existsSync(p));
    if (ro) {
      const p = await run(
        ['--device', `${ro}:/dev/ro:r`],
        'dd if=/dev/ro of=/dev/null bs=4 count=1 2>&1; echo read=$?; echo x 2>&1 > /dev/ro; echo write=$?',
      );
      const [read, write] = p.stdout.split(/read=\d+\n/);
      assert.doesNotMatch(read ?? '', /Operation not permitted/, 'r is allowed');
      assert.match(write ?? '', /write=[1-9]/);
      assert.match(p.stderr + (write ?? ''), /Operation not permitted/, 'w is not');
    }
    const id = await d.runDetached(['--device', '/dev/null:/dev/mynull', 'busybox', 'true']);
    assert.deepEqual((await d.inspect<Inspect>(id)).HostConfig.Devices, [
      { PathOnHost: '/dev/null', PathInContainer: '/dev/mynull', CgroupPermissions: 'rwm' },
    ]);

    const before = await count();
    const notDev = await d.berth(['create', '--device', '/etc/passwd', 'busybox']);
    assert.equal(notDev.code, 125);
    assert.match(
      notDev.stderr,
      /Invalid devices\[0\]\.pathOnHost: \/etc\/passwd is not a device node/,
    );
    const outside = await d.berth(['create', '--device', '/dev/null:/etc/null', 'busybox']);
    assert.equal(outside.code, 125);
    assert.match(outside.stderr, /devices\[0\]\.pathInContainer/);
    assert.equal(await count(), before);
  });
});
