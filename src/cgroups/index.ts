// cgroup v1 (hybrid, as on these machines) and v2 (unified, most production hosts) behind
// one small surface. The root is injected so tests can point it at a fixture tree.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readStatsV1, readStatsV2, v1GroupExists, v2GroupExists } from './stats.ts';
import type { CgroupStats } from './stats.ts';

export type { CgroupStats } from './stats.ts';

export type CgroupVersion = 1 | 2;

// v1 hierarchies a monitor joins. cpuset is left out on purpose: a new v1 cpuset group
// starts with no cpus or mems and refuses tasks until both are copied down.
const V1_MONITOR_HIERARCHIES = ['memory', 'cpu', 'cpuacct', 'pids', 'blkio', 'systemd'];

export interface CgroupsOptions {
  /** Clock ticks per second of v1 cpuacct.stat (sysconf _SC_CLK_TCK); default 100. */
  readonly userHz?: number;
}

export class Cgroups {
  readonly root: string;
  readonly version: CgroupVersion;
  readonly userHz: number;

  constructor(root = '/sys/fs/cgroup', opts: CgroupsOptions = {}) {
    this.root = root;
    this.version = existsSync(join(root, 'cgroup.controllers')) ? 2 : 1;
    this.userHz = opts.userHz ?? 100;
  }

  private v1Hierarchies(): string[] {
    return readdirSync(this.root).filter((d) => {
      const p = join(this.root, d);
      try {
        return statSync(p).isDirectory() && existsSync(join(p, 'cgroup.procs')) && d !== 'unified';
      } catch {
        return false;
      }
    });
  }

  // Creates the cgroup monitors live in (outside berthd's own and outside every container's)
  // and returns the cgroup.procs files a monitor writes its pid to.
  ensureMonitorGroup(name: string): string[] {
    const dirs =
      this.version === 2
        ? [join(this.root, name)]
        : this.v1Hierarchies()
            .filter((h) => V1_MONITOR_HIERARCHIES.includes(h))
            .map((h) => join(this.root, h, name));
    for (const d of dirs) mkdirSync(d, { recursive: true });
    return dirs.map((d) => join(d, 'cgroup.procs'));
  }

  // The file whose `oom_kill N` line counts OOM kills in a container's group.
  oomFile(cgroupsPath: string): string {
    return this.version === 2
      ? join(this.root, cgroupsPath, 'memory.events')
      : join(this.root, 'memory', cgroupsPath, 'memory.oom_control');
  }

  containerDirs(cgroupsPath: string): string[] {
    return this.version === 2
      ? [join(this.root, cgroupsPath)]
      : this.v1Hierarchies().map((h) => join(this.root, h, cgroupsPath));
  }

  // runc delete removes the groups; this is the sweep for what a crash left behind.
  // rmdir only succeeds on an empty group, so a live container is never touched.
  removeContainer(cgroupsPath: string): string[] {
    const left: string[] = [];
    for (const d of this.containerDirs(cgroupsPath)) {
      if (!existsSync(d)) continue;
      try {
        rmdirSync(d);
      } catch {
        left.push(d);
      }
    }
    return left;
  }

  readOomKills(cgroupsPath: string): number {
    try {
      const m = /^oom_kill (\d+)$/m.exec(readFileSync(this.oomFile(cgroupsPath), 'utf8'));
      return m ? Number(m[1]) : 0;
    } catch {
      return 0;
    }
  }

  // A container's resource counters, or undefined when its cgroup does not exist (anymore).
  // Never throws: a file missing in a group that exists reads as 0 (null for limits).
  readStats(cgroupsPath: string): CgroupStats | undefined {
    if (this.version === 2) {
      return v2GroupExists(this.root, cgroupsPath)
        ? readStatsV2(this.root, cgroupsPath)
        : undefined;
    }
    return v1GroupExists(this.root, cgroupsPath)
      ? readStatsV1(this.root, cgroupsPath, { userHz: this.userHz })
      : undefined;
  }

  // One sampling pass over many containers; those whose cgroup is gone are left out.
  readStatsMany(paths: readonly string[]): Map<string, CgroupStats> {
    const out = new Map<string, CgroupStats>();
    for (const p of paths) {
      if (out.has(p)) continue;
      const s = this.readStats(p);
      if (s !== undefined) out.set(p, s);
    }
    return out;
  }
}
