import { readdirSync, readFileSync } from 'node:fs';

// The hard RLIMIT_NOFILE berthd (and so every monitor and runc it starts) runs under.
// Without CAP_SYS_RESOURCE a container cannot be given more.
export function hardNofile(procRoot = '/proc'): number {
  try {
    const m = /^Max open files\s+\S+\s+(\S+)/m.exec(
      readFileSync(`${procRoot}/self/limits`, 'utf8'),
    );
    const v = m?.[1];
    return v === undefined || v === 'unlimited' ? 1048576 : Math.min(Number(v), 1048576);
  } catch {
    return 1024;
  }
}

// True when pid is alive and its command line contains every marker (guards against a
// recycled pid after a reboot or a long downtime).
export function processMatches(
  pid: number,
  markers: readonly string[],
  procRoot = '/proc',
): boolean {
  if (pid <= 0) return false;
  try {
    const cmd = readFileSync(`${procRoot}/${pid}/cmdline`, 'utf8');
    return markers.every((m) => cmd.includes(m));
  } catch {
    return false;
  }
}

// Pids whose command line contains every marker.
export function findProcesses(markers: readonly string[], procRoot = '/proc'): number[] {
  const out: number[] = [];
  for (const e of readdirSync(procRoot)) {
    if (/^\d+$/.test(e) && processMatches(Number(e), markers, procRoot)) out.push(Number(e));
  }
  return out;
}
