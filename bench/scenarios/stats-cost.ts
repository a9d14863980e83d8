// stats-cost: what resource statistics cost with N idle containers (`sleep 3600`) running.
// berth: `berth stats --no-stream` (the CLI, all containers), one scrape of /metrics on
// berthd's socket, and berthd's CPU per second while idle (its sampler reads every running
// container's cgroup once a second). docker: `docker stats --no-stream` (dockerd asks
// containerd, which asks every shim, and waits for two samples a second apart), and its
// daemons and shims while idle; podman likewise (no daemon: the CLI reads the cgroups).
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchDaemon } from '../lib/berthd.ts';
import { makeContainers } from '../lib/bulk.ts';
import { cliInGroup, removeAll, startBerth, type Engine } from '../lib/engines.ts';
import { BENCH_CGROUP, CLIENT_CGROUP } from '../lib/host.ts';
import { cpuDelta, CpuGroup, readCpu, type CpuReading } from '../lib/sysstat.ts';
import { removePeerContainers, stopBerth, sweepBenchCgroups } from '../lib/teardown.ts';
import type { BenchContext, Measured, Scenario, Subject } from '../lib/types.ts';
import { unixRequest, type Reply } from '../lib/unix-http.ts';

// Samples of the peers' stats calls (docker's takes ~2 s by design) and idle windows, and
// of berth's idle windows right after reads: fewer than the rounds, to keep the suite
// within its time (each idle window is already an average over several seconds).
const PEER_RUNS = 3;
const BERTH_IDLE_RUNS = 4;
// Quiet time before an idle window, so that the previous sample's tail is not in it.
const SETTLE_MS = 1000;
// berthd's sampler slows down once nobody has read stats for 30 s (src/engine/stats.ts):
// the "unread" idle window starts this long after the last read, and is long enough for a
// few of its passes (one every 5 s).
const UNREAD_MS = 32_000;
const UNREAD_WINDOW_MS = 20_000;
const UNREAD_RUNS = 1;

// CPU of an engine's host processes at one moment.
interface Snapshot {
  readonly agents: { name: string; pid: number; cpu: CpuReading }[];
  readonly helperNs: number;
  readonly groupNs: number | undefined;
}

function snapshot(e: Engine): Snapshot {
  const agents = e.agents().map((a) => ({ ...a, cpu: readCpu(a.pid) }));
  return { agents, helperNs: e.helperCpuNs(), groupNs: e.groupCpuNs?.() };
}

interface Used {
  // ns; NaN for an engine without agents.
  readonly agentNs: number;
  // The same from /proc/<pid>/stat alone (10 ms ticks).
  readonly agentStatNs: number;
  readonly helperNs: number;
  readonly perAgent: Record<string, { ns: number; statNs: number; precise: boolean }>;
}

function used(e: Engine, a: Snapshot, b: Snapshot): Used {
  const perAgent: Used['perAgent'] = {};
  let agentNs = 0;
  let agentStatNs = 0;
  for (const x of b.agents) {
    const before = a.agents.find((y) => y.pid === x.pid);
    if (!before) continue;
    const d = cpuDelta(before.cpu, x.cpu);
    const statNs = (x.cpu.statNs ?? NaN) - (before.cpu.statNs ?? NaN);
    perAgent[`${x.name} ${x.pid}`] = { ns: d.ns, statNs, precise: d.precise };
    agentNs += d.ns;
    agentStatNs += statNs;
  }
  const hasAgents = b.agents.length > 0;
  // docker: one cgroup for daemons and shims; the shims' share is what the daemons did
  // not use.
  const helperNs =
    a.groupNs !== undefined && b.groupNs !== undefined
      ? b.groupNs - a.groupNs - agentNs
      : b.helperNs - a.helperNs;
  return {
    agentNs: hasAgents ? agentNs : NaN,
    agentStatNs: hasAgents ? agentStatNs : NaN,
    helperNs,
    perAgent,
  };
}

const ms = (ns: number) => ns / 1e6;

// Starts n idle containers (bulk.ts: the daemons' APIs, podman's CLI a few at a time). On a
// failure, waits for the calls under way before throwing, so that teardown sees every
// container made.
function startIdle(e: Engine, n: number, signal: AbortSignal): Promise<string[]> {
  return makeContainers(e, n, { cmd: ['sleep', '3600'], start: true }, signal);
}

// Rows of a stats table (the header line excluded).
const tableRows = (stdout: string) => stdout.split('\n').filter((l) => l.trim() !== '').length - 1;

// One GET /metrics on berthd's unix socket, a new connection as a scraper would make.
async function scrape(socket: string, signal: AbortSignal): Promise<Reply> {
  const r = await unixRequest(socket, '/metrics', { agent: false, signal });
  if (r.status !== 200) throw new Error(`GET /metrics: HTTP ${r.status}`);
  return r;
}

// Containers with a series in a scrape.
function scrapedContainers(body: string): number {
  const ids = new Set<string>();
  for (const m of body.matchAll(/^berth_container_cpu_seconds_total\{[^}]*\bid="([^"]+)"/gm)) {
    ids.add(m[1] ?? '');
  }
  return ids.size;
}

export function statsCost(): Scenario {
  let berth: BenchDaemon | undefined;
  let clients: CpuGroup | undefined;
  const notes: string[] = [];
  // Total CPU ms/s of every idle window (warm-up included), per engine.
  const idleTotals = new Map<string, number[]>();
  const idleRange = () =>
    idleTotals.size === 0
      ? []
      : [
          'idle total CPU ms/s, lowest-highest window (warm-up included): ' +
            [...idleTotals]
              .map(([e, v]) => `${e} ${Math.min(...v).toFixed(1)}-${Math.max(...v).toFixed(1)}`)
              .join(', '),
        ];

  return {
    name: 'stats-cost',
    description: 'the cost of resource stats with idle containers (sleep 3600) running',
    metrics: [
      { key: 'ms', label: 'wall ms', better: 'lower', digits: 1 },
      { key: 'agentCpu', label: 'agent CPU ms', better: 'lower', digits: 1 },
      { key: 'helperCpu', label: 'helper CPU ms', better: 'lower', digits: 1 },
      { key: 'cliCpu', label: 'CLI CPU ms', better: 'lower', digits: 1 },
      { key: 'totalCpu', label: 'total CPU ms', better: 'lower', digits: 1 },
    ],
    schedule: (quick) => (quick ? { runs: 3, warmup: 1 } : { runs: 6, warmup: 1 }),

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      const n = ctx.quick ? 10 : 100;
      const idleMs = ctx.quick ? 3000 : 6000;
      ctx.log('starting berthd');
      const b = await startBerth(BENCH_CGROUP);
      berth = b.d;
      const d = b.d;
      const cg = CpuGroup.create(CLIENT_CGROUP);
      clients = cg;

      // `<engine> stats --no-stream`, its CLI in the bench's CPU group; every sample must
      // list all n containers.
      const statsCall = async (e: Engine, signal: AbortSignal): Promise<Measured> => {
        const s0 = snapshot(e);
        const cli0 = cg.usageNs();
        const r = await cliInGroup(e, cg, ['stats', '--no-stream'], {
          signal,
          stdout: 'all',
          timeoutMs: 120_000,
        });
        const cliNs = cg.usageNs() - cli0;
        const u = used(e, s0, snapshot(e));
        const rows = tableRows(r.stdout);
        if (rows !== n) throw new Error(`${e.name} stats --no-stream listed ${rows} of ${n}`);
        const agent = Number.isNaN(u.agentNs) ? 0 : u.agentNs;
        return {
          values: {
            ms: r.ms,
            agentCpu: ms(u.agentNs),
            helperCpu: ms(u.helperNs),
            cliCpu: ms(cliNs),
            totalCpu: ms(agent + u.helperNs + cliNs),
          },
          detail: { agentStatMs: ms(u.agentStatNs), perAgent: u.perAgent, rows },
        };
      };

      const metricsScrape = async (signal: AbortSignal): Promise<Measured> => {
        const s0 = snapshot(b.e);
        const self0 = process.cpuUsage();
        const r = await scrape(d.socket, signal);
        const self = process.cpuUsage(self0);
        const u = used(b.e, s0, snapshot(b.e));
        const containers = scrapedContainers(r.body);
        if (containers !== n) throw new Error(`/metrics has series for ${containers} of ${n}`);
        return {
          values: {
            ms: r.ms,
            agentCpu: ms(u.agentNs),
            helperCpu: ms(u.helperNs),
            cliCpu: NaN,
            totalCpu: ms(u.agentNs + u.helperNs),
          },
          detail: {
            agentStatMs: ms(u.agentStatNs),
            perAgent: u.perAgent,
            bytes: Buffer.byteLength(r.body),
            lines: r.body.split('\n').length,
            // The bench's own http client (Node): not counted in the row.
            clientCpuMs: (self.user + self.system) / 1000,
          },
        };
      };

      // When berthd's sampler last had a reader (stats or /metrics): it samples every second
      // for 30 s after a read, every 5 s otherwise.
      let lastRead = 0;

      // CPU per second of an idle window: agents from /proc/<pid>/stat, helpers from their
      // cgroup; in the CPU columns, as ms per s.
      const idle = async (
        e: Engine,
        key: string,
        windowMs: number,
        signal: AbortSignal,
      ): Promise<Measured> => {
        await sleep(SETTLE_MS, undefined, { signal });
        const s0 = snapshot(e);
        const t0 = process.hrtime.bigint();
        const sinceRead = (Date.now() - lastRead) / 1000;
        await sleep(windowMs, undefined, { signal });
        const s1 = snapshot(e);
        const secs = Number(process.hrtime.bigint() - t0) / 1e9;
        const u = used(e, s0, s1);
        const agent = ms(u.agentStatNs) / secs;
        const helper = ms(u.helperNs) / secs;
        const total = (Number.isNaN(agent) ? 0 : agent) + helper;
        idleTotals.set(key, [...(idleTotals.get(key) ?? []), total]);
        return {
          values: { ms: NaN, agentCpu: agent, helperCpu: helper, cliCpu: NaN, totalCpu: total },
          detail: {
            seconds: secs,
            agentStatMs: ms(u.agentStatNs),
            agentPreciseMs: ms(u.agentNs),
            helperMs: ms(u.helperNs),
            helperProcesses: e.helpers().length,
            perAgent: u.perAgent,
            ...(e.name === 'berth' ? { secondsSinceBerthRead: sinceRead } : {}),
          },
        };
      };

      ctx.log(`berth: starting ${n} containers`);
      await startIdle(b.e, n, ctx.signal);
      // The sampler must have seen them all (a --no-stream call waits for its next pass).
      let rows = 0;
      const deadline = Date.now() + 15_000;
      while (rows !== n && Date.now() < deadline) {
        rows = tableRows((await d.cliOk(['stats', '--no-stream'], { stdout: 'all' })).stdout);
        if (rows !== n) await sleep(500, undefined, { signal: ctx.signal });
      }
      if (rows !== n) throw new Error(`berth stats --no-stream lists ${rows} of ${n} containers`);
      lastRead = Date.now();

      const peers: Engine[] = [];
      for (const p of ctx.peers) {
        try {
          ctx.log(`${p.name}: starting ${n} containers`);
          await startIdle(p, n, ctx.signal);
          peers.push(p);
        } catch (e) {
          if (ctx.signal.aborted) throw e;
          const why = e instanceof Error ? e.message : String(e);
          notes.push(`${p.name} left out: starting its containers failed: ${why}`);
          ctx.log(`${p.name}: left out: ${why}`);
          await removeAll(p);
        }
      }

      const group = 'stats --no-stream';
      const read = <T>(m: T): T => {
        lastRead = Date.now();
        return m;
      };
      const subjects: Subject[] = [
        {
          name: 'berth',
          label: 'berth stats --no-stream',
          role: 'subject',
          group,
          sample: async (signal) => read(await statsCall(b.e, signal)),
        },
        ...peers.map((p): Subject => ({
          name: p.name,
          label: `${p.name} stats --no-stream`,
          role: 'peer',
          group,
          maxRuns: PEER_RUNS,
          sample: (signal) => statsCall(p, signal),
        })),
        {
          name: 'berth',
          label: "GET /metrics on berthd's socket",
          role: 'subject',
          group: '/metrics',
          sample: async (signal) => read(await metricsScrape(signal)),
        },
        // Right after the reads above: the sampler at full pace.
        {
          name: 'berth',
          label: 'berth idle, read <30 s ago: CPU ms/s',
          role: 'subject',
          group: 'idle, read',
          maxRuns: BERTH_IDLE_RUNS,
          sample: (signal) => idle(b.e, 'berth read', idleMs, signal),
        },
        ...peers.map((p): Subject => ({
          name: p.name,
          label: `${p.name} idle: CPU ms/s`,
          role: 'peer',
          group: 'idle',
          maxRuns: PEER_RUNS,
          sample: (signal) => idle(p, p.name, idleMs, signal),
        })),
      ];
      if (!ctx.quick) {
        // Once nobody has read for 30 s: the sampler every 5 s.
        subjects.push({
          name: 'berth',
          label: `berth idle, unread ${UNREAD_MS / 1000} s: CPU ms/s`,
          role: 'subject',
          group: 'idle',
          maxRuns: UNREAD_RUNS,
          warmup: false,
          async sample(signal) {
            const wait = lastRead + UNREAD_MS - SETTLE_MS - Date.now();
            if (wait > 0) await sleep(wait, undefined, { signal });
            return idle(b.e, 'berth unread', UNREAD_WINDOW_MS, signal);
          },
        });
      }
      notes.push(
        `${n} containers running in each engine (all engines' at once) throughout`,
        'agent: berthd | dockerd + containerd, podman none; helper: berth-monitors | ' +
          "containerd-shims (dockerd's CPU group minus the daemons) | conmons; CLI: the stats " +
          "process (berth's is Node; podman's reads the cgroups itself); total: their sum",
        "per call: agents' CPU from the threads' /proc/<pid>/task/*/schedstat (ns), which " +
          '/proc/<pid>/stat (10 ms ticks, in the JSON) cannot resolve; a call may include ' +
          "the agent's background work meanwhile (berthd's sampling pass, see idle)",
        `idle rows: CPU ms per second over ${idleMs / 1000} s with nobody asking, after ` +
          `${SETTLE_MS / 1000} s of quiet; agents from /proc/<pid>/stat. berthd samples every ` +
          's for 30 s after a stats or /metrics read, every 5 s otherwise: "read" right after ' +
          'the reads above, ' +
          (ctx.quick
            ? '"unread" left out with --quick'
            : `"unread" from ${UNREAD_MS / 1000} s after the last read, over ` +
              `${UNREAD_WINDOW_MS / 1000} s`),
        '/metrics: the client is the bench itself (Node http, a new connection each time): ' +
          'its CPU is in the JSON, not in the row',
      );
      return subjects;
    },

    async teardown(ctx: BenchContext): Promise<string[]> {
      // The idle containers are kept until now.
      const left = await removePeerContainers(ctx.peers, { expected: true, recheck: true });
      left.push(
        ...(await stopBerth(berth, { expected: true, rmTimeoutMs: 600_000, settleMs: 30_000 })),
      );
      berth = undefined;
      left.push(...sweepBenchCgroups(clients));
      clients = undefined;
      return left;
    },

    notes: () => [...notes, ...idleRange()],
  };
}
