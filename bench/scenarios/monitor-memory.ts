// monitor-memory: what an idle container costs on the host outside the container. N idle
// containers (`sleep 3600`) are started one after the other; once settled, the RSS and PSS
// (from /proc/<pid>/smaps_rollup; PSS shares each shared page among the processes mapping
// it) of every per-container helper process is read: berth-monitor, containerd-shim-runc-v2
// (docker), conmon (podman); and the RSS of the engine's agent before, with the N running,
// and after they are removed: berthd; dockerd + containerd; podman has no daemon.
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchDaemon } from '../lib/berthd.ts';
import { cli, printedId, startBerth, type Engine } from '../lib/engines.ts';
import { BENCH_CGROUP } from '../lib/host.ts';
import { waitUntil } from '../lib/proc.ts';
import { procMem } from '../lib/sysstat.ts';
import { removePeerContainers, stopBerth, sweepBenchCgroups } from '../lib/teardown.ts';
import type { BenchContext, Measured, Scenario, Subject } from '../lib/types.ts';

const SETTLE_MS = 2000;

function agentRss(e: Engine): { total: number; each: Record<string, number> } {
  const each: Record<string, number> = {};
  for (const a of e.agents()) each[a.name] = (each[a.name] ?? 0) + (procMem(a.pid)?.rssKiB ?? 0);
  return { total: Object.values(each).reduce((x, y) => x + y, 0) / 1024, each };
}

export function monitorMemory(): Scenario {
  let berth: BenchDaemon | undefined;
  const notes: string[] = [];

  return {
    name: 'monitor-memory',
    description: 'memory outside the container of idle containers (sleep 3600)',
    metrics: [
      { key: 'pss', label: 'PSS KiB/ctr', better: 'lower', digits: 0 },
      { key: 'rss', label: 'RSS KiB/ctr', better: 'lower', digits: 0 },
      { key: 'procs', label: 'procs/ctr', better: 'lower', digits: 2, compare: false },
      { key: 'agent', label: 'agent RSS MiB', better: 'lower', digits: 1 },
      { key: 'growth', label: 'agent +MiB running', better: 'lower', digits: 1, compare: false },
      { key: 'after', label: 'agent +MiB after rm', better: 'lower', digits: 1, compare: false },
      { key: 'runMs', label: 'run -d ms', better: 'lower', digits: 0 },
    ],
    schedule: (quick) => (quick ? { runs: 1, warmup: 0 } : { runs: 2, warmup: 0 }),

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      const n = ctx.quick ? 10 : 50;
      ctx.log('starting berthd');
      const b = await startBerth(BENCH_CGROUP);
      berth = b.d;

      const sample = async (e: Engine, signal: AbortSignal): Promise<Measured> => {
        const ids: string[] = [];
        try {
          await sleep(SETTLE_MS);
          const before = agentRss(e);
          const t0 = process.hrtime.bigint();
          for (let i = 0; i < n; i++) {
            const r = await cli(e, ['run', '-d', ...e.runFlags, e.image, 'sleep', '3600'], {
              signal,
            });
            ids.push(printedId(r.stdout));
          }
          const runMs = Number(process.hrtime.bigint() - t0) / 1e6 / n;
          await sleep(SETTLE_MS);
          const helpers = e.helpers().map((h) => ({ ...h, ...procMem(h.pid) }));
          if (helpers.length < n) {
            notes.push(`${e.name}: ${helpers.length} helper processes for ${n} containers`);
          }
          const sum = (k: 'rssKiB' | 'pssKiB') => helpers.reduce((a, h) => a + (h[k] ?? 0), 0);
          const during = agentRss(e);
          await cli(e, e.rmArgs(ids), { signal, timeoutMs: 10 * 60_000 });
          ids.length = 0;
          await waitUntil(() => e.helpers().length === 0, 30_000);
          await sleep(SETTLE_MS);
          const after = agentRss(e);
          const hasAgent = e.agents().length > 0;
          return {
            values: {
              pss: sum('pssKiB') / n,
              rss: sum('rssKiB') / n,
              procs: helpers.length / n,
              agent: hasAgent ? before.total : NaN,
              growth: hasAgent ? during.total - before.total : NaN,
              after: hasAgent ? after.total - before.total : NaN,
              runMs,
            },
            detail: {
              helpers,
              agentKiB: { before: before.each, during: during.each, after: after.each },
            },
          };
        } finally {
          if (ids.length > 0)
            await cli(e, e.rmArgs(ids), { timeoutMs: 600_000 }).catch(() => undefined);
        }
      };

      notes.push(
        `${n} containers per round; per-container values are the sums over all helper ` +
          'processes divided by the number of containers; agent RSS before the round, then ' +
          `growth with the ${n} running and after their removal (${SETTLE_MS} ms settling each)`,
      );
      return [b.e, ...ctx.peers].map((e) => ({
        name: e.name,
        label: `${e.name} run -d ${e.image} sleep 3600 (x${n})`,
        role: e.name === 'berth' ? 'subject' : 'peer',
        sample: (signal) => sample(e, signal),
      }));
    },

    async teardown(ctx: BenchContext): Promise<string[]> {
      const left = await removePeerContainers(ctx.peers);
      left.push(...(await stopBerth(berth, { settleMs: 10_000 })));
      berth = undefined;
      left.push(...sweepBenchCgroups());
      return left;
    },

    notes: () => notes,
  };
}
