// berth's default seccomp profile, and the one resolver that turns a profile in Docker's
// format (conditional rules: `includes` / `excludes` by capability, architecture, kernel)
// into the OCI `linux.seccomp` object runc applies. The default is an allow-list with the
// intent of Docker's: everything a normal program needs, nothing that reaches kernel state
// shared with the host (modules, kexec, keyrings, new user namespaces, mounts, bpf, ...)
// unless the container holds the capability that makes it legitimate.
//
// runc 1.1.5 with libseccomp 2.5.4 applies it: `defaultErrnoRet`, multi-arch filters,
// argument filters (SCMP_CMP_MASKED_EQ included) and `errnoRet` are supported. Names
// libseccomp does not know are skipped by runc, and runc answers every syscall newer than
// the newest it knows with ENOSYS (its -ENOSYS stub), so programs fall back from a new
// syscall to an old one instead of failing on EPERM.
import { invalid } from '../util/errors.ts';

export interface SeccompArg {
  readonly index: number;
  readonly value: number;
  readonly valueTwo?: number;
  readonly op: string;
}

interface Condition {
  readonly caps?: readonly string[];
  // Go's architecture names (amd64, arm64, x86, ...), as Docker's profiles use them.
  readonly arches?: readonly string[];
  readonly minKernel?: string;
}

// A rule as Docker's profiles write it.
export interface ProfileRule {
  readonly names: readonly string[];
  readonly action: string;
  readonly errnoRet?: number;
  readonly args?: readonly SeccompArg[];
  readonly includes?: Condition;
  readonly excludes?: Condition;
  readonly comment?: string;
}

export interface SeccompProfile {
  readonly defaultAction: string;
  readonly defaultErrnoRet?: number;
  readonly architectures?: readonly string[];
  readonly archMap?: readonly {
    readonly architecture: string;
    readonly subArchitectures?: readonly string[] | null;
  }[];
  readonly flags?: readonly string[];
  readonly syscalls: readonly ProfileRule[];
}

export interface OciSyscall {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: { index: number; value: number; valueTwo: number; op: string }[];
}

// The OCI runtime spec's linux.seccomp.
export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  syscalls: OciSyscall[];
}

// What a profile's conditions are decided on.
export interface SeccompContext {
  // The container's capabilities (its bounding set), CAP_ names.
  readonly caps: readonly string[];
  // Node's process.arch of the host (x64, arm64, ...).
  readonly arch?: string;
  // The host kernel's release (os.release()); only profiles with minKernel need it.
  readonly kernel?: string;
}

const EPERM = 1;
const ENOSYS = 38;

// The namespace flags of clone(2) and unshare(2): CLONE_NEWNS, CLONE_NEWCGROUP,
// CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET. Without
// CAP_SYS_ADMIN a clone with any of them is refused; the rest of clone (threads, fork)
// stays allowed.
const CLONE_NS_FLAGS = 0x7e020000;
// unshare(2) also takes CLONE_NEWTIME (0x80, the exit-signal bits in clone(2)'s flags).
const UNSHARE_NS_FLAGS = CLONE_NS_FLAGS | 0x80;
// Address families refused to socket(2): AF_ALG (38, the kernel crypto API, a long line of
// kernel bugs) and AF_VSOCK (40, a channel to the hypervisor).
const AF_ALG = 38;
const AF_VSOCK = 40;

// Grouped by what they do, so a reader can see that each belongs. Allowed for every
// container; what a syscall may touch is then the kernel's usual permission checks inside
// the container's namespaces.
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  files: [
    'access',
    'faccessat',
    'faccessat2',
    'chdir',
    'fchdir',
    'getcwd',
    'chmod',
    'fchmod',
    'fchmodat',
    'fchmodat2',
    'chown',
    'chown32',
    'fchown',
    'fchown32',
    'fchownat',
    'lchown',
    'lchown32',
    'umask',
    'open',
    'openat',
    'openat2',
    'creat',
    'close',
    'close_range',
    'dup',
    'dup2',
    'dup3',
    'fcntl',
    'fcntl64',
    'flock',
    'ioctl',
    'read',
    'readv',
    'pread64',
    'preadv',
    'preadv2',
    'write',
    'writev',
    'pwrite64',
    'pwritev',
    'pwritev2',
    'lseek',
    '_llseek',
    'sendfile',
    'sendfile64',
    'splice',
    'tee',
    'vmsplice',
    'copy_file_range',
    'readahead',
    'fadvise64',
    'fadvise64_64',
    'fallocate',
    'truncate',
    'truncate64',
    'ftruncate',
    'ftruncate64',
    'fsync',
    'fdatasync',
    'sync',
    'syncfs',
    'sync_file_range',
    'stat',
    'stat64',
    'lstat',
    'lstat64',
    'fstat',
    'fstat64',
    'fstatat64',
    'newfstatat',
    'statx',
    'statfs',
    'statfs64',
    'fstatfs',
    'fstatfs64',
    'cachestat',
    'getdents',
    'getdents64',
    'mkdir',
    'mkdirat',
    'rmdir',
    'mknod',
    'mknodat',
    'link',
    'linkat',
    'symlink',
    'symlinkat',
    'readlink',
    'readlinkat',
    'unlink',
    'unlinkat',
    'rename',
    'renameat',
    'renameat2',
    'utime',
    'utimes',
    'utimensat',
    'utimensat_time64',
    'futimesat',
    'getxattr',
    'lgetxattr',
    'fgetxattr',
    'getxattrat',
    'setxattr',
    'lsetxattr',
    'fsetxattr',
    'setxattrat',
    'listxattr',
    'llistxattr',
    'flistxattr',
    'listxattrat',
    'removexattr',
    'lremovexattr',
    'fremovexattr',
    'removexattrat',
    // A handle is harmless; opening by one (open_by_handle_at) is what escapes a root.
    'name_to_handle_at',
    'inotify_init',
    'inotify_init1',
    'inotify_add_watch',
    'inotify_rm_watch',
    'fanotify_mark',
    // Reading the mount table (the container's own), never changing it.
    'statmount',
    'listmount',
  ],
  waiting: [
    'select',
    '_newselect',
    'pselect6',
    'pselect6_time64',
    'poll',
    'ppoll',
    'ppoll_time64',
    'epoll_create',
    'epoll_create1',
    'epoll_ctl',
    'epoll_ctl_old',
    'epoll_wait',
    'epoll_wait_old',
    'epoll_pwait',
    'epoll_pwait2',
    'eventfd',
    'eventfd2',
    'signalfd',
    'signalfd4',
    'timerfd_create',
    'timerfd_settime',
    'timerfd_settime64',
    'timerfd_gettime',
    'timerfd_gettime64',
    // Linux AIO; io_uring is not here (see below).
    'io_setup',
    'io_destroy',
    'io_submit',
    'io_cancel',
    'io_getevents',
    'io_pgetevents',
    'io_pgetevents_time64',
  ],
  memory: [
    'brk',
    'mmap',
    'mmap2',
    'munmap',
    'mremap',
    'mprotect',
    'madvise',
    'mincore',
    'msync',
    'mlock',
    'mlock2',
    'mlockall',
    'munlock',
    'munlockall',
    'remap_file_pages',
    'membarrier',
    'memfd_create',
    'memfd_secret',
    'pkey_alloc',
    'pkey_free',
    'pkey_mprotect',
    'map_shadow_stack',
    'mseal',
  ],
  processes: [
    'execve',
    'execveat',
    'exit',
    'exit_group',
    'fork',
    'vfork',
    'wait4',
    'waitid',
    'waitpid',
    'getpid',
    'getppid',
    'gettid',
    'getpgid',
    'setpgid',
    'getpgrp',
    'getsid',
    'setsid',
    'set_tid_address',
    'set_robust_list',
    'get_robust_list',
    'futex',
    'futex_time64',
    'futex_waitv',
    'futex_wait',
    'futex_wake',
    'futex_requeue',
    'rseq',
    'restart_syscall',
    'prctl',
    'capget',
    'capset',
    'getrlimit',
    'setrlimit',
    'ugetrlimit',
    'prlimit64',
    'getrusage',
    'getpriority',
    'setpriority',
    'ioprio_get',
    'ioprio_set',
    'sched_yield',
    'sched_getaffinity',
    'sched_setaffinity',
    'sched_getattr',
    'sched_setattr',
    'sched_getparam',
    'sched_setparam',
    'sched_getscheduler',
    'sched_setscheduler',
    'sched_get_priority_max',
    'sched_get_priority_min',
    'sched_rr_get_interval',
    'sched_rr_get_interval_time64',
    'getcpu',
    'get_thread_area',
    'set_thread_area',
    // A process may always narrow itself further.
    'seccomp',
    'landlock_create_ruleset',
    'landlock_add_rule',
    'landlock_restrict_self',
    'pidfd_open',
    'pidfd_send_signal',
    'process_mrelease',
    'uname',
    'sysinfo',
    'getrandom',
    'times',
    'uretprobe',
  ],
  credentials: [
    'getuid',
    'getuid32',
    'geteuid',
    'geteuid32',
    'getgid',
    'getgid32',
    'getegid',
    'getegid32',
    'getresuid',
    'getresuid32',
    'getresgid',
    'getresgid32',
    'getgroups',
    'getgroups32',
    'setuid',
    'setuid32',
    'setgid',
    'setgid32',
    'setreuid',
    'setreuid32',
    'setregid',
    'setregid32',
    'setresuid',
    'setresuid32',
    'setresgid',
    'setresgid32',
    'setgroups',
    'setgroups32',
    'setfsuid',
    'setfsuid32',
    'setfsgid',
    'setfsgid32',
  ],
  signals: [
    'kill',
    'tkill',
    'tgkill',
    'rt_sigaction',
    'rt_sigprocmask',
    'rt_sigpending',
    'rt_sigqueueinfo',
    'rt_tgsigqueueinfo',
    'rt_sigreturn',
    'rt_sigsuspend',
    'rt_sigtimedwait',
    'rt_sigtimedwait_time64',
    'sigaltstack',
    'sigprocmask',
    'sigreturn',
    'pause',
    'alarm',
    'getitimer',
    'setitimer',
  ],
  time: [
    'time',
    'gettimeofday',
    'clock_gettime',
    'clock_gettime64',
    'clock_getres',
    'clock_getres_time64',
    'clock_nanosleep',
    'clock_nanosleep_time64',
    'nanosleep',
    'timer_create',
    'timer_delete',
    'timer_getoverrun',
    'timer_gettime',
    'timer_gettime64',
    'timer_settime',
    'timer_settime64',
    // Reading the clock's state; changing it needs CAP_SYS_TIME in the kernel.
    'adjtimex',
    'clock_adjtime',
    'clock_adjtime64',
  ],
  network: [
    'accept',
    'accept4',
    'bind',
    'connect',
    'listen',
    'shutdown',
    'getsockname',
    'getpeername',
    'getsockopt',
    'setsockopt',
    'socketpair',
    'send',
    'sendto',
    'sendmsg',
    'sendmmsg',
    'recv',
    'recvfrom',
    'recvmsg',
    'recvmmsg',
    'recvmmsg_time64',
    // i386's multiplexer for the calls above (and socket); its arguments are in memory.
    'socketcall',
  ],
  ipc: [
    'pipe',
    'pipe2',
    'ipc',
    'msgget',
    'msgctl',
    'msgsnd',
    'msgrcv',
    'semget',
    'semctl',
    'semop',
    'semtimedop',
    'semtimedop_time64',
    'shmget',
    'shmctl',
    'shmat',
    'shmdt',
    'mq_open',
    'mq_unlink',
    'mq_timedsend',
    'mq_timedsend_time64',
    'mq_timedreceive',
    'mq_timedreceive_time64',
    'mq_notify',
    'mq_getsetattr',
  ],
};

// Refused whatever the container's capabilities (only seccomp=unconfined or --privileged
// lifts them), as Docker's profile does, plus io_uring and ptrace without CAP_SYS_PTRACE
// (see DEFAULT_PROFILE):
//   kexec_load, kexec_file_load      replace the host's kernel
//   keyctl, add_key, request_key      the kernel keyrings are not namespaced
//   userfaultfd                       stalls the kernel at will; a staple of exploits
//   swapon, swapoff, pivot_root       host-wide or runtime-only
//   io_uring_setup/_enter/_register   its own path around seccomp, and many kernel bugs
//   uselib, ustat, sysfs, _sysctl, nfsservctl, vm86, vm86old, create_module,
//   get_kernel_syms, query_module     obsolete
export const ALWAYS_REFUSED: readonly string[] = [
  'kexec_load',
  'kexec_file_load',
  'keyctl',
  'add_key',
  'request_key',
  'userfaultfd',
  'swapon',
  'swapoff',
  'pivot_root',
  'io_uring_setup',
  'io_uring_enter',
  'io_uring_register',
];

const allow = (names: readonly string[], more: Omit<ProfileRule, 'names' | 'action'> = {}) => ({
  names,
  action: 'SCMP_ACT_ALLOW',
  ...more,
});
const withCaps = (caps: string[], names: string[]) => allow(names, { includes: { caps } });
const onArches = (arches: string[], names: string[]) => allow(names, { includes: { arches } });
const equal = (value: number): SeccompArg => ({ index: 0, value, op: 'SCMP_CMP_EQ' });

// The default profile, in Docker's format so that berth's and a user's go through the
// same resolver (resolveProfile).
export const DEFAULT_PROFILE: SeccompProfile = {
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: EPERM,
  archMap: [
    { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
    { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
    { architecture: 'SCMP_ARCH_S390X', subArchitectures: ['SCMP_ARCH_S390'] },
    { architecture: 'SCMP_ARCH_PPC64LE', subArchitectures: [] },
    { architecture: 'SCMP_ARCH_RISCV64', subArchitectures: [] },
  ],
  syscalls: [
    allow(Object.values(ALLOWED).flat()),
    // socket(2) of every family but AF_ALG and AF_VSOCK.
    allow(['socket'], { args: [{ index: 0, value: AF_ALG, op: 'SCMP_CMP_LT' }] }),
    allow(['socket'], { args: [{ index: 0, value: AF_ALG + 1, op: 'SCMP_CMP_EQ' }] }),
    allow(['socket'], { args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_GT' }] }),
    // personality(2): Linux, 32-bit Linux, UNAME26 of either, and the query; never
    // READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE and friends, which weaken the process's own
    // protections.
    ...[0, 0x8, 0x20000, 0x20008, 0xffffffff].map((v) =>
      allow(['personality'], { args: [equal(v)] }),
    ),
    // Architecture-specific calls, on their architectures.
    onArches(['amd64', 'x32'], ['arch_prctl']),
    onArches(['amd64', 'x32', 'x86'], ['modify_ldt']),
    onArches(
      ['arm', 'arm64'],
      [
        'arm_fadvise64_64',
        'arm_sync_file_range',
        'sync_file_range2',
        'breakpoint',
        'cacheflush',
        'set_tls',
      ],
    ),
    onArches(['ppc64le'], ['sync_file_range2', 'swapcontext']),
    onArches(
      ['s390', 's390x'],
      ['s390_pci_mmio_read', 's390_pci_mmio_write', 's390_runtime_instr'],
    ),
    onArches(['riscv64'], ['riscv_flush_icache', 'riscv_hwprobe']),
    // What a capability makes legitimate comes with it.
    withCaps(['CAP_DAC_READ_SEARCH'], ['open_by_handle_at']),
    withCaps(
      ['CAP_SYS_ADMIN'],
      [
        'mount',
        'umount',
        'umount2',
        'mount_setattr',
        'move_mount',
        'open_tree',
        'fsopen',
        'fsconfig',
        'fsmount',
        'fspick',
        'clone',
        'clone3',
        'unshare',
        'setns',
        'sethostname',
        'setdomainname',
        'bpf',
        'perf_event_open',
        'fanotify_init',
        'lookup_dcookie',
        'quotactl',
        'quotactl_fd',
        'syslog',
        'lsm_get_self_attr',
        'lsm_set_self_attr',
        'lsm_list_modules',
      ],
    ),
    // Without CAP_SYS_ADMIN: clone(2) for threads and processes, never for namespaces.
    // clone3(2) passes its flags in memory, where a filter cannot look: ENOSYS makes libc
    // fall back to clone(2), which is filtered.
    allow(['clone'], {
      args: [{ index: 0, value: CLONE_NS_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      excludes: { caps: ['CAP_SYS_ADMIN'], arches: ['s390', 's390x'] },
    }),
    allow(['clone'], {
      args: [{ index: 1, value: CLONE_NS_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      comment: "s390's clone takes the flags second",
      includes: { arches: ['s390', 's390x'] },
      excludes: { caps: ['CAP_SYS_ADMIN'] },
    }),
    {
      names: ['clone3'],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: ENOSYS,
      excludes: { caps: ['CAP_SYS_ADMIN'] },
    },
    // unshare(2) of what is not a namespace (CLONE_FILES, CLONE_FS, CLONE_SYSVSEM) stays
    // allowed; a new user namespace (or any other) does not.
    allow(['unshare'], {
      args: [{ index: 0, value: UNSHARE_NS_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      excludes: { caps: ['CAP_SYS_ADMIN'] },
    }),
    withCaps(['CAP_SYS_BOOT'], ['reboot']),
    withCaps(['CAP_SYS_CHROOT'], ['chroot']),
    withCaps(['CAP_SYS_MODULE'], ['init_module', 'finit_module', 'delete_module']),
    withCaps(['CAP_SYS_PACCT'], ['acct']),
    // Docker allows ptrace to everyone on kernels from 4.8 (where seccomp is checked again
    // after a tracer changes a syscall). berth does not: the pid namespace already keeps a
    // container from host processes, and ptrace within it is a debugging tool that
    // `--cap-add SYS_PTRACE` turns on, not something a service needs; without it, the
    // ptrace family's kernel bugs (PTRACE_TRACEME, CVE-2019-13272) are out of reach.
    withCaps(
      ['CAP_SYS_PTRACE'],
      ['ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'pidfd_getfd', 'process_madvise'],
    ),
    withCaps(['CAP_SYS_RAWIO'], ['iopl', 'ioperm']),
    withCaps(['CAP_SYS_TIME'], ['settimeofday', 'stime', 'clock_settime', 'clock_settime64']),
    withCaps(['CAP_SYS_TTY_CONFIG'], ['vhangup']),
    withCaps(
      ['CAP_SYS_NICE'],
      ['get_mempolicy', 'mbind', 'set_mempolicy', 'set_mempolicy_home_node'],
    ),
    withCaps(['CAP_SYSLOG'], ['syslog']),
    withCaps(['CAP_BPF'], ['bpf']),
    withCaps(['CAP_PERFMON'], ['perf_event_open']),
  ],
};

// Node's process.arch → Go's GOARCH, the names in profiles' conditions.
const GOARCH: Readonly<Record<string, string>> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: 'x86',
  s390x: 's390x',
  ppc64: 'ppc64le',
  riscv64: 'riscv64',
};

// Node's process.arch → libseccomp's name of the native architecture.
const NATIVE: Readonly<Record<string, string>> = {
  x64: 'SCMP_ARCH_X86_64',
  arm64: 'SCMP_ARCH_AARCH64',
  arm: 'SCMP_ARCH_ARM',
  ia32: 'SCMP_ARCH_X86',
  s390x: 'SCMP_ARCH_S390X',
  ppc64: 'SCMP_ARCH_PPC64LE',
  riscv64: 'SCMP_ARCH_RISCV64',
};

// The architectures a filter for this host covers: the native one and the ones its CPU
// also runs (i386 and x32 on x86_64, arm on aarch64). A syscall made through an ABI the
// filter does not list is refused by runc's bad-arch action.
export function filterArchitectures(
  profile: SeccompProfile,
  arch: string = process.arch,
): string[] {
  if (profile.architectures) return [...profile.architectures];
  const native = NATIVE[arch];
  const entry = profile.archMap?.find((a) => a.architecture === native);
  if (entry) return [entry.architecture, ...(entry.subArchitectures ?? [])];
  return [];
}

function kernelAtLeast(kernel: string | undefined, min: string): boolean {
  const v = (s: string) => (s.match(/^(\d+)\.(\d+)/) ?? []).slice(1, 3).map(Number);
  const [a = 0, b = 0] = v(kernel ?? '');
  const [x = 0, y = 0] = v(min);
  return a > x || (a === x && b >= y);
}

function applies(rule: ProfileRule, ctx: SeccompContext, goarch: string): boolean {
  const inc = rule.includes;
  if (inc) {
    if (inc.caps?.some((c) => !ctx.caps.includes(c))) return false;
    if (inc.arches?.length && !inc.arches.includes(goarch)) return false;
    if (inc.minKernel && !kernelAtLeast(ctx.kernel, inc.minKernel)) return false;
  }
  const exc = rule.excludes;
  if (exc) {
    if (exc.caps?.some((c) => ctx.caps.includes(c))) return false;
    if (exc.arches?.includes(goarch)) return false;
    if (exc.minKernel && kernelAtLeast(ctx.kernel, exc.minKernel)) return false;
  }
  return true;
}

// The OCI linux.seccomp for a container with these capabilities on this host.
export function resolveProfile(profile: SeccompProfile, ctx: SeccompContext): OciSeccomp {
  const arch = ctx.arch ?? process.arch;
  const goarch = GOARCH[arch] ?? arch;
  const out: OciSeccomp = { defaultAction: profile.defaultAction, syscalls: [] };
  if (profile.defaultErrnoRet !== undefined) out.defaultErrnoRet = profile.defaultErrnoRet;
  const architectures = filterArchitectures(profile, arch);
  if (architectures.length > 0) out.architectures = architectures;
  if (profile.flags?.length) out.flags = [...profile.flags];
  for (const r of profile.syscalls) {
    if (!applies(r, ctx, goarch)) continue;
    const s: OciSyscall = { names: [...r.names], action: r.action };
    if (r.errnoRet !== undefined) s.errnoRet = r.errnoRet;
    if (r.args?.length)
      s.args = r.args.map((a) => ({
        index: a.index,
        value: a.value,
        valueTwo: a.valueTwo ?? 0,
        op: a.op,
      }));
    out.syscalls.push(s);
  }
  return out;
}

export function defaultSeccomp(ctx: SeccompContext): OciSeccomp {
  return resolveProfile(DEFAULT_PROFILE, ctx);
}

// ---- a profile a user gives (--security-opt seccomp=PROFILE.json) ----

// What runc 1.1.5 takes. SCMP_ACT_NOTIFY is left out: it needs a listener berth does not run.
const ACTIONS = [
  'SCMP_ACT_KILL',
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_TRAP',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_TRACE',
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_LOG',
];
const OPS = [
  'SCMP_CMP_NE',
  'SCMP_CMP_LT',
  'SCMP_CMP_LE',
  'SCMP_CMP_EQ',
  'SCMP_CMP_GE',
  'SCMP_CMP_GT',
  'SCMP_CMP_MASKED_EQ',
];
const FLAGS = [
  'SECCOMP_FILTER_FLAG_TSYNC',
  'SECCOMP_FILTER_FLAG_LOG',
  'SECCOMP_FILTER_FLAG_SPEC_ALLOW',
];
const ARCH = /^SCMP_ARCH_[A-Z0-9_]{1,24}$/;
const SYSCALL = /^[a-z_][a-z0-9_]{0,63}$/;
const CAP = /^CAP_[A-Z_]{1,32}$/;
const MAX_RULES = 4096;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// Parses and checks a profile in Docker's format (or an OCI linux.seccomp object, which is
// the same without the conditions), naming the bad part in `field`.
export function parseProfile(text: string, field: string): SeccompProfile {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw invalid(field, `the seccomp profile is not JSON (${(e as Error).message})`);
  }
  const bad = (where: string, msg: string) => invalid(field, `seccomp profile ${where}: ${msg}`);
  if (!isObject(v)) throw bad('', 'must be a JSON object');
  const known = [
    'defaultAction',
    'defaultErrnoRet',
    'architectures',
    'archMap',
    'flags',
    'syscalls',
    'listenerPath',
    'listenerMetadata',
  ];
  for (const k of Object.keys(v))
    if (!known.includes(k)) throw bad(k, `unknown field (one of ${known.join(', ')})`);
  if (v['listenerPath'] !== undefined || v['listenerMetadata'] !== undefined)
    throw bad('listenerPath', 'seccomp notification is not supported by berth');
  const action = (x: unknown, where: string): string => {
    if (typeof x !== 'string' || !ACTIONS.includes(x))
      throw bad(where, `${JSON.stringify(x)} is not one of ${ACTIONS.join(', ')}`);
    return x;
  };
  const errno = (x: unknown, where: string): number | undefined => {
    if (x === undefined || x === null) return undefined;
    if (!Number.isInteger(x) || (x as number) < 0 || (x as number) > 4095)
      throw bad(where, 'must be an errno number from 0 to 4095');
    return x as number;
  };
  const strings = (x: unknown, where: string, re: RegExp, max = 1024): string[] | undefined => {
    if (x === undefined || x === null) return undefined;
    if (!Array.isArray(x) || x.length > max) throw bad(where, `must be a list of at most ${max}`);
    return x.map((s, i) => {
      if (typeof s !== 'string' || !re.test(s))
        throw bad(`${where}[${i}]`, `${JSON.stringify(s)} is not a valid name`);
      return s;
    });
  };
  const condition = (x: unknown, where: string): Condition | undefined => {
    if (x === undefined || x === null) return undefined;
    if (!isObject(x)) throw bad(where, 'must be an object');
    for (const k of Object.keys(x))
      if (!['caps', 'arches', 'minKernel'].includes(k))
        throw bad(`${where}.${k}`, 'unknown field (one of caps, arches, minKernel)');
    const caps = strings(x['caps'], `${where}.caps`, CAP, 64);
    const arches = strings(x['arches'], `${where}.arches`, /^[a-z0-9]{1,16}$/, 32);
    const mk = x['minKernel'];
    if (mk !== undefined && mk !== null && (typeof mk !== 'string' || !/^\d+\.\d+/.test(mk)))
      throw bad(`${where}.minKernel`, `${JSON.stringify(mk)} is not a kernel version like 4.8`);
    return {
      ...(caps ? { caps } : {}),
      ...(arches ? { arches } : {}),
      ...(typeof mk === 'string' ? { minKernel: mk } : {}),
    };
  };

  const defaultAction = action(v['defaultAction'], 'defaultAction');
  const defaultErrnoRet = errno(v['defaultErrnoRet'], 'defaultErrnoRet');
  if (defaultErrnoRet !== undefined && defaultAction !== 'SCMP_ACT_ERRNO')
    throw bad('defaultErrnoRet', 'applies to SCMP_ACT_ERRNO only');
  const architectures = strings(v['architectures'], 'architectures', ARCH, 16);
  let archMap: SeccompProfile['archMap'];
  if (v['archMap'] !== undefined && v['archMap'] !== null) {
    if (architectures) throw bad('archMap', 'give architectures or archMap, not both');
    if (!Array.isArray(v['archMap']) || v['archMap'].length > 32)
      throw bad('archMap', 'must be a list of at most 32');
    archMap = v['archMap'].map((a: unknown, i: number) => {
      const w = `archMap[${i}]`;
      if (!isObject(a) || typeof a['architecture'] !== 'string' || !ARCH.test(a['architecture']))
        throw bad(w, 'needs an architecture like SCMP_ARCH_X86_64');
      return {
        architecture: a['architecture'],
        subArchitectures: strings(a['subArchitectures'], `${w}.subArchitectures`, ARCH, 16) ?? [],
      };
    });
  }
  const flags = strings(v['flags'], 'flags', /^[A-Z_]+$/, 8);
  for (const f of flags ?? [])
    if (!FLAGS.includes(f)) throw bad('flags', `${f} is not one of ${FLAGS.join(', ')}`);

  const raw = v['syscalls'] ?? [];
  if (!Array.isArray(raw) || raw.length > MAX_RULES)
    throw bad('syscalls', `must be a list of at most ${MAX_RULES} rules`);
  const syscalls = raw.map((r: unknown, i: number): ProfileRule => {
    const w = `syscalls[${i}]`;
    if (!isObject(r)) throw bad(w, 'must be an object');
    for (const k of Object.keys(r))
      if (
        ![
          'names',
          'name',
          'action',
          'errnoRet',
          'args',
          'includes',
          'excludes',
          'comment',
        ].includes(k)
      )
        throw bad(`${w}.${k}`, 'unknown field');
    const names = strings(r['names'], `${w}.names`, SYSCALL) ?? [];
    if (typeof r['name'] === 'string') {
      if (!SYSCALL.test(r['name'])) throw bad(`${w}.name`, `"${r['name']}" is not a valid name`);
      names.push(r['name']);
    }
    if (names.length === 0) throw bad(w, 'names no syscall');
    const act = action(r['action'], `${w}.action`);
    const errnoRet = errno(r['errnoRet'], `${w}.errnoRet`);
    if (errnoRet !== undefined && act !== 'SCMP_ACT_ERRNO' && act !== 'SCMP_ACT_TRACE')
      throw bad(`${w}.errnoRet`, 'applies to SCMP_ACT_ERRNO and SCMP_ACT_TRACE only');
    let args: SeccompArg[] | undefined;
    if (r['args'] !== undefined && r['args'] !== null) {
      if (!Array.isArray(r['args']) || r['args'].length > 6)
        throw bad(`${w}.args`, 'must be a list of at most 6');
      args = r['args'].map((a: unknown, j: number) => {
        const aw = `${w}.args[${j}]`;
        if (!isObject(a)) throw bad(aw, 'must be an object');
        const index = a['index'];
        if (!Number.isInteger(index) || (index as number) < 0 || (index as number) > 5)
          throw bad(`${aw}.index`, 'must be 0 to 5');
        const num = (x: unknown, k: string): number | undefined => {
          if (x === undefined || x === null) return undefined;
          if (!Number.isSafeInteger(x) || (x as number) < 0)
            throw bad(`${aw}.${k}`, 'must be a whole number from 0 to 2^53');
          return x as number;
        };
        const value = num(a['value'], 'value') ?? 0;
        const valueTwo = num(a['valueTwo'], 'valueTwo');
        if (typeof a['op'] !== 'string' || !OPS.includes(a['op']))
          throw bad(`${aw}.op`, `${JSON.stringify(a['op'])} is not one of ${OPS.join(', ')}`);
        return {
          index: index as number,
          value,
          ...(valueTwo !== undefined ? { valueTwo } : {}),
          op: a['op'],
        };
      });
    }
    const includes = condition(r['includes'], `${w}.includes`);
    const excludes = condition(r['excludes'], `${w}.excludes`);
    return {
      names,
      action: act,
      ...(errnoRet !== undefined ? { errnoRet } : {}),
      ...(args ? { args } : {}),
      ...(includes ? { includes } : {}),
      ...(excludes ? { excludes } : {}),
    };
  });
  return {
    defaultAction,
    ...(defaultErrnoRet !== undefined ? { defaultErrnoRet } : {}),
    ...(architectures ? { architectures } : {}),
    ...(archMap ? { archMap } : {}),
    ...(flags ? { flags } : {}),
    syscalls,
  };
}
