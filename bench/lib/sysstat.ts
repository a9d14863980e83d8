// What processes cost, read from /proc and from cgroups: CPU time (per process, and per
// cgroup, which also counts children that have already exited) and memory (RSS, PSS).
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CGROUP_ROOT, cgroupDirs, sweepCgroups } from './host.ts';

// USER_HZ: the unit of utime/stime in /proc/<pid>/stat; 100 on every Linux ABI Node runs on.
const TICK_NS = 1e9 / 100;

export interface ProcRef {
  readonly name: string;
  readonly pid: number;
}

const V2 = () => existsSync(join(CGROUP_ROOT, 'cgroup.controllers'));

// utime + stime of a live process in ns; undefined once it is gone.
export function procCpuNs(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at state, field 3.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_NS;
  } catch {
    return undefined;
  }
}

// A process's CPU time read two ways: utime + stime from /proc/<pid>/stat (10 ms ticks,
// exited threads included) and, per live thread, the scheduler's own runtime in ns from
// /proc/<pid>/task/<tid>/schedstat.
export interface CpuReading {
  readonly statNs: number | undefined;
  readonly threadNs: ReadonlyMap<number, number> | undefined;
}

export function readCpu(pid: number): CpuReading {
  let threadNs: Map<number, number> | undefined = new Map();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        if (Number.isFinite(ns)) threadNs.set(Number(tid), ns);
      } catch {
        /* the thread exited meanwhile: its time is in the next stat reading */
      }
    }
  } catch {
    threadNs = undefined;
  }
  return { statNs: procCpuNs(pid), threadNs: threadNs?.size ? threadNs : undefined };
}

// CPU used between two readings of one process: to the ns from the threads' runtimes when
// every thread of the first reading is still there (new ones count in full), else the
// tick-based difference (an exited thread's time is only in /proc/<pid>/stat).
export function cpuDelta(a: CpuReading, b: CpuReading): { ns: number; precise: boolean } {
  const stat = (b.statNs ?? NaN) - (a.statNs ?? NaN);
  const ta = a.threadNs;
  const tb = b.threadNs;
  if (!ta || !tb || [...ta.keys()].some((t) => !tb.has(t))) return { ns: stat, precise: false };
  let ns = 0;
  for (const [t, v] of tb) ns += v - (ta.get(t) ?? 0);
  return { ns, precise: true };
}

export interface Mem {
  readonly rssKiB: number;
  readonly pssKiB: number;
}

// Resident and proportional set size (shared pages divided among the processes mapping
// them) of a live process, from smaps_rollup.
export function procMem(pid: number): Mem | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
    return { rssKiB: kib('Rss'), pssKiB: kib('Pss') };
  } catch {
    return undefined;
  }
}

// VmRSS of a live process (KiB) from /proc/<pid>/status; NaN when there is none.
export function procRssKiB(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Number(m?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

export function procName(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

// Children of a process, from /proc/<pid>/task/*/children.
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .split(' ')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

// The directory of a cgroup in the hierarchy that accounts CPU time.
export function cpuGroupDir(name: string): string {
  return V2() ? join(CGROUP_ROOT, name) : join(CGROUP_ROOT, 'cpuacct', name);
}

// Cumulative CPU time (ns) of every process that ever ran in the group (and its
// descendants), including those that have exited; 0 when the group does not exist yet.
export function cgroupCpuNs(name: string): number {
  const dir = cpuGroupDir(name);
  try {
    if (V2()) {
      const m = /^usage_usec (\d+)$/m.exec(readFileSync(join(dir, 'cpu.stat'), 'utf8'));
      return Number(m?.[1] ?? 0) * 1000;
    }
    return Number(readFileSync(join(dir, 'cpuacct.usage'), 'utf8').trim());
  } catch {
    return 0;
  }
}

// A cgroup of the bench's own, only to count CPU time: processes are put in it by a
// wrapper (`sh -c 'echo $$ > cgroup.procs; exec "$@"'`), so all their descendants are
// counted too. Under cgroup v1 only the cpuacct hierarchy is touched.
export class CpuGroup {
  readonly name: string;
  private constructor(name: string) {
    this.name = name;
  }

  static create(name: string): CpuGroup {
    mkdirSync(cpuGroupDir(name), { recursive: true });
    return new CpuGroup(name);
  }

  get procsFile(): string {
    return join(cpuGroupDir(this.name), 'cgroup.procs');
  }

  usageNs(): number {
    return cgroupCpuNs(this.name);
  }

  // argv that runs file in this group.
  wrap(file: string, args: readonly string[]): { file: string; args: string[] } {
    return {
      file: '/bin/sh',
      args: ['-c', 'echo $$ > "$0" && exec "$@"', this.procsFile, file, ...args],
    };
  }

  // Removes the group (and any under it) once empty; returns what could not be removed.
  remove(): string[] {
    return sweepCgroups(this.name);
  }

  exists(): boolean {
    return cgroupDirs(this.name).length > 0 || existsSync(cpuGroupDir(this.name));
  }
}
