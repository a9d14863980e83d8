// Reading a container's resource counters from its cgroup, v1 (one hierarchy per
// controller) or v2 (one unified tree). Every read is defensive: a file that is missing or
// unreadable gives 0 (null for limits and pressure) and never throws, because a sample races
// with containers exiting and with kernels that lack a controller or a file.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CgroupStats {
  /** Total CPU time: v1 cpuacct.usage; v2 cpu.stat usage_usec * 1000. */
  readonly cpuUsageNs: number;
  /** v1 cpuacct.stat user (USER_HZ ticks -> ns); v2 cpu.stat user_usec * 1000. */
  readonly cpuUserNs: number;
  /** v1 cpuacct.stat system (USER_HZ ticks -> ns); v2 cpu.stat system_usec * 1000. */
  readonly cpuSystemNs: number;
  /** CFS enforcement periods that elapsed (cpu.stat nr_periods); with cpuThrottledPeriods gives a ratio. */
  readonly cpuPeriods: number;
  /** cpu.stat nr_throttled. */
  readonly cpuThrottledPeriods: number;
  /** v1 cpu.stat throttled_time (ns); v2 throttled_usec * 1000. */
  readonly cpuThrottledNs: number;
  /** v1 memory.usage_in_bytes; v2 memory.current. */
  readonly memoryUsage: number;
  /** null when unlimited (v1 a value >= 2^62; v2 "max") or unknown. */
  readonly memoryLimit: number | null;
  /** v1 memory.stat total_rss (or rss); v2 memory.stat anon. */
  readonly memoryRss: number;
  /** v1 memory.stat total_cache (or cache); v2 memory.stat file. */
  readonly memoryCache: number;
  /** Times the limit was hit: v1 memory.failcnt; v2 memory.events max. */
  readonly memoryFailcnt: number;
  /** v2 memory.events high; 0 on v1. */
  readonly memoryHighEvents: number;
  /** v2 memory.pressure "some avg10" (percent); null on v1 or without PSI. */
  readonly memoryPressureAvg10: number | null;
  /** v1 memory.oom_control oom_kill; v2 memory.events oom_kill. */
  readonly oomKills: number;
  readonly pidsCurrent: number;
  /** null when "max" or unknown. */
  readonly pidsLimit: number | null;
  /** v1 blkio io_service_bytes Read summed over devices; v2 io.stat rbytes summed. */
  readonly blkioReadBytes: number;
  /** v1 blkio io_service_bytes Write summed over devices; v2 io.stat wbytes summed. */
  readonly blkioWriteBytes: number;
}

// v1 reports "no limit" as a huge page-aligned number (e.g. 9223372036854771712).
const V1_UNLIMITED = 2 ** 62;

// ---- small parsing helpers (exported for tests) ----

/** The file's text, or undefined when it cannot be read (missing, removed, EOPNOTSUPP). */
export function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** A non-negative finite number, or 0. */
export function toNumber(s: string | undefined): number {
  if (s === undefined) return 0;
  const n = Number(s.trim());
  return Number.isFinite(n) && n >= 0 ? n : 0;
}

/** "key value" lines (cpu.stat, memory.stat, memory.events, cpuacct.stat, oom_control). */
export function parseKeyed(text: string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  if (text === undefined) return out;
  for (const line of text.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp <= 0) continue;
    out.set(line.slice(0, sp), toNumber(line.slice(sp + 1)));
  }
  return out;
}

/** A single-value file; "max" and unreadable give 0. */
export function parseSingle(text: string | undefined): number {
  return text === undefined ? 0 : toNumber(text);
}

/** A limit file: null for "max", for a v1 "unlimited" value, or when unreadable. */
export function parseLimit(text: string | undefined): number | null {
  if (text === undefined) return null;
  const t = text.trim();
  if (t === '' || t === 'max') return null;
  const n = Number(t);
  return Number.isFinite(n) && n >= 0 && n < V1_UNLIMITED ? n : null;
}

/** v1 blkio io_service_bytes: "MAJ:MIN Read N" lines, summed per operation over devices. */
export function parseBlkioV1(text: string | undefined): { read: number; write: number } {
  let read = 0;
  let write = 0;
  if (text === undefined) return { read, write };
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length !== 3) continue; // the trailing "Total N" line has two fields
    if (f[1] === 'Read') read += toNumber(f[2]);
    else if (f[1] === 'Write') write += toNumber(f[2]);
  }
  return { read, write };
}

/** v2 io.stat: "MAJ:MIN rbytes=N wbytes=N ..." lines, summed over devices. */
export function parseIoStatV2(text: string | undefined): { read: number; write: number } {
  let read = 0;
  let write = 0;
  if (text === undefined) return { read, write };
  for (const line of text.split('\n')) {
    for (const kv of line.trim().split(/\s+/).slice(1)) {
      const eq = kv.indexOf('=');
      if (eq < 0) continue;
      const k = kv.slice(0, eq);
      if (k === 'rbytes') read += toNumber(kv.slice(eq + 1));
      else if (k === 'wbytes') write += toNumber(kv.slice(eq + 1));
    }
  }
  return { read, write };
}

/** PSI file: the avg10 of the "some" line, or null when absent (no PSI) or malformed. */
export function parsePressureSomeAvg10(text: string | undefined): number | null {
  if (text === undefined) return null;
  const m = /^some\b.*\bavg10=(\d+(?:\.\d+)?)/m.exec(text);
  return m ? Number(m[1]) : null;
}

// ---- readers ----

export interface V1StatsOptions {
  /** Clock ticks per second of cpuacct.stat (sysconf _SC_CLK_TCK); 100 on Linux. */
  readonly userHz: number;
}

// Where a v1 controller may be mounted, in the order to try: separate hierarchies first,
// then the combined "cpu,cpuacct" one most distributions mount (often with symlinks).
const V1_CPUACCT_DIRS = ['cpuacct', 'cpu,cpuacct', 'cpuacct,cpu'];
const V1_CPU_DIRS = ['cpu', 'cpu,cpuacct', 'cpuacct,cpu'];
const V1_EXISTENCE_DIRS = ['memory', 'pids', 'cpuacct', 'cpu,cpuacct', 'cpu', 'blkio'];
// Throttle files count on every kernel; the CFQ/BFQ-era ones are a fallback.
const V1_BLKIO_FILES = [
  'blkio.throttle.io_service_bytes_recursive',
  'blkio.throttle.io_service_bytes',
  'blkio.io_service_bytes_recursive',
  'blkio.io_service_bytes',
];

function firstReadable(paths: Iterable<string>): string | undefined {
  for (const p of paths) {
    const t = readText(p);
    if (t !== undefined) return t;
  }
  return undefined;
}

/** True when the container has a group in any stats-bearing v1 hierarchy. */
export function v1GroupExists(root: string, cgroupsPath: string): boolean {
  return V1_EXISTENCE_DIRS.some((h) => existsSync(join(root, h, cgroupsPath)));
}

export function readStatsV1(root: string, cgroupsPath: string, opts: V1StatsOptions): CgroupStats {
  const mem = join(root, 'memory', cgroupsPath);
  const pids = join(root, 'pids', cgroupsPath);
  const blkioDir = join(root, 'blkio', cgroupsPath);

  const usage = firstReadable(
    V1_CPUACCT_DIRS.map((h) => join(root, h, cgroupsPath, 'cpuacct.usage')),
  );
  const acct = parseKeyed(
    firstReadable(V1_CPUACCT_DIRS.map((h) => join(root, h, cgroupsPath, 'cpuacct.stat'))),
  );
  const cpu = parseKeyed(
    firstReadable(V1_CPU_DIRS.map((h) => join(root, h, cgroupsPath, 'cpu.stat'))),
  );
  const nsPerTick = 1e9 / (opts.userHz > 0 ? opts.userHz : 100);

  const memStat = parseKeyed(readText(join(mem, 'memory.stat')));
  const oom = parseKeyed(readText(join(mem, 'memory.oom_control')));
  const io = parseBlkioV1(firstReadable(V1_BLKIO_FILES.map((f) => join(blkioDir, f))));

  return {
    cpuUsageNs: parseSingle(usage),
    cpuUserNs: (acct.get('user') ?? 0) * nsPerTick,
    cpuSystemNs: (acct.get('system') ?? 0) * nsPerTick,
    cpuPeriods: cpu.get('nr_periods') ?? 0,
    cpuThrottledPeriods: cpu.get('nr_throttled') ?? 0,
    cpuThrottledNs: cpu.get('throttled_time') ?? 0,
    memoryUsage: parseSingle(readText(join(mem, 'memory.usage_in_bytes'))),
    memoryLimit: parseLimit(readText(join(mem, 'memory.limit_in_bytes'))),
    memoryRss: memStat.get('total_rss') ?? memStat.get('rss') ?? 0,
    memoryCache: memStat.get('total_cache') ?? memStat.get('cache') ?? 0,
    memoryFailcnt: parseSingle(readText(join(mem, 'memory.failcnt'))),
    memoryHighEvents: 0,
    memoryPressureAvg10: null,
    oomKills: oom.get('oom_kill') ?? 0,
    pidsCurrent: parseSingle(readText(join(pids, 'pids.current'))),
    pidsLimit: parseLimit(readText(join(pids, 'pids.max'))),
    blkioReadBytes: io.read,
    blkioWriteBytes: io.write,
  };
}

export function v2GroupExists(root: string, cgroupsPath: string): boolean {
  return existsSync(join(root, cgroupsPath));
}

export function readStatsV2(root: string, cgroupsPath: string): CgroupStats {
  const dir = join(root, cgroupsPath);
  const cpu = parseKeyed(readText(join(dir, 'cpu.stat')));
  const memStat = parseKeyed(readText(join(dir, 'memory.stat')));
  const events = parseKeyed(readText(join(dir, 'memory.events')));
  const io = parseIoStatV2(readText(join(dir, 'io.stat')));
  return {
    cpuUsageNs: (cpu.get('usage_usec') ?? 0) * 1000,
    cpuUserNs: (cpu.get('user_usec') ?? 0) * 1000,
    cpuSystemNs: (cpu.get('system_usec') ?? 0) * 1000,
    cpuPeriods: cpu.get('nr_periods') ?? 0,
    cpuThrottledPeriods: cpu.get('nr_throttled') ?? 0,
    cpuThrottledNs: (cpu.get('throttled_usec') ?? 0) * 1000,
    memoryUsage: parseSingle(readText(join(dir, 'memory.current'))),
    memoryLimit: parseLimit(readText(join(dir, 'memory.max'))),
    memoryRss: memStat.get('anon') ?? 0,
    memoryCache: memStat.get('file') ?? 0,
    memoryFailcnt: events.get('max') ?? 0,
    memoryHighEvents: events.get('high') ?? 0,
    memoryPressureAvg10: parsePressureSomeAvg10(readText(join(dir, 'memory.pressure'))),
    oomKills: events.get('oom_kill') ?? 0,
    pidsCurrent: parseSingle(readText(join(dir, 'pids.current'))),
    pidsLimit: parseLimit(readText(join(dir, 'pids.max'))),
    blkioReadBytes: io.read,
    blkioWriteBytes: io.write,
  };
}
