// The steps scenarios' teardowns share. Each removes what a scenario made and returns what
// it found left behind, as lines for the report.
import type { BenchDaemon } from './berthd.ts';
import { removeAll, type Engine } from './engines.ts';
import { BENCH_CGROUP, sweepCgroups } from './host.ts';
import { waitUntil } from './proc.ts';
import type { CpuGroup } from './sysstat.ts';

export interface ContainerSweep {
  // The containers found are the scenario's own, kept until teardown: removed, not reported.
  readonly expected?: boolean;
  // Looks again after removing them, and reports any still there.
  readonly recheck?: boolean;
}

// Removes every container of these peers.
export async function removePeerContainers(
  peers: readonly Engine[],
  o: ContainerSweep = {},
): Promise<string[]> {
  const left: string[] = [];
  for (const p of peers) {
    for (const id of await removeAll(p)) if (!o.expected) left.push(`${p.name}: container ${id}`);
    if (o.recheck) {
      for (const id of await removeAll(p)) left.push(`${p.name}: container ${id} not removed`);
    }
  }
  return left;
}

export interface BerthStop {
  // The containers found are the scenario's own, kept until teardown: removed, not reported.
  readonly expected?: boolean;
  // For `rm -f` of the containers found (default: a CLI call's 60 s).
  readonly rmTimeoutMs?: number;
  // At most this long for berthd to finish removals before its leftovers are read.
  readonly settleMs?: number;
}

// Removes berthd's containers, reports what berth left on the host for them, and stops it.
// Nothing to do without one (a set-up that failed before it started).
export async function stopBerth(d: BenchDaemon | undefined, o: BerthStop = {}): Promise<string[]> {
  if (!d) return [];
  const left: string[] = [];
  const ps = await d.cli(['ps', '-a', '-q'], { stdout: 'all' });
  const ids = ps.stdout.split('\n').filter(Boolean);
  if (!o.expected) for (const id of ids) left.push(`berth: container ${id}`);
  if (ids.length > 0) {
    await d.cli(
      ['rm', '-f', ...ids],
      o.rmTimeoutMs === undefined ? {} : { timeoutMs: o.rmTimeoutMs },
    );
  }
  const settle = o.settleMs;
  if (settle !== undefined) await waitUntil(() => d.leftovers().length === 0, settle);
  left.push(...d.leftovers().map((l) => `berth: ${l}`));
  left.push(...(await d.netnsLeftovers()).map((l) => `berth: ${l}`));
  left.push(...(await d.stop()).map((l) => `berth teardown: ${l}`));
  return left;
}

// Removes the bench's cgroup parent, and the CLI group when there is one, once empty.
export function sweepBenchCgroups(clients?: CpuGroup): string[] {
  const busy = [...sweepCgroups(BENCH_CGROUP), ...(clients?.remove() ?? [])];
  return busy.map((g) => `cgroup still busy: ${g}`);
}
