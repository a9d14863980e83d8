// log-throughput: a container writes ~500 MB of short lines to stdout as fast as its engine
// takes them; the bench starts it (detached) and waits for its exit. Measured: the wall
// time from `start` to the end of `wait`, and the CPU time of every host process that
// worked on it outside the container, split into the engine's agent (berthd; dockerd +
// containerd), the per-container helper (berth-monitor; containerd-shim; conmon, with the
// runc and clean-up processes they start) and the CLI processes (start, wait).
import { openSync, closeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BareRunc } from '../lib/bare-runc.ts';
import type { BenchDaemon } from '../lib/berthd.ts';
import { cli, cliInGroup, inspectTimes, startBerth, type Engine } from '../lib/engines.ts';
import { BENCH_CGROUP, CLIENT_CGROUP, RUNC } from '../lib/host.ts';
import { runOk, waitUntil } from '../lib/proc.ts';
import { summarize } from '../lib/stats.ts';
import { CpuGroup, procCpuNs } from '../lib/sysstat.ts';
import { removePeerContainers, stopBerth, sweepBenchCgroups } from '../lib/teardown.ts';
import type { BenchContext, Measured, Scenario, Subject } from '../lib/types.ts';
import { createWriter, logLoad, MB } from '../lib/workload.ts';

interface CpuSnap {
  readonly agents: Map<number, { name: string; ns: number }>;
  readonly helperNs: number;
  readonly clientNs: number;
}

function snap(e: Engine, clients: CpuGroup): CpuSnap {
  const agents = new Map<number, { name: string; ns: number }>();
  for (const a of e.agents()) agents.set(a.pid, { name: a.name, ns: procCpuNs(a.pid) ?? 0 });
  return { agents, helperNs: e.helperCpuNs(), clientNs: clients.usageNs() };
}

const DOCKER_RUNS = 2;

export function logThroughput(): Scenario {
  let berth: BenchDaemon | undefined;
  let clients: CpuGroup | undefined;
  let runc: BareRunc | undefined;
  const notes: string[] = [];
  // Per engine: the run time it recorded itself (StartedAt to FinishedAt), for the notes.
  const runS = new Map<string, number[]>();

  return {
    name: 'log-throughput',
    description: 'one container writes short lines to stdout as fast as it can; until exit',
    metrics: [
      { key: 'wall', label: 'wall s', better: 'lower', digits: 2 },
      { key: 'mbps', label: 'MB/s', better: 'higher', digits: 0 },
      { key: 'agentCpu', label: 'agent CPU s', better: 'lower', digits: 2 },
      { key: 'helperCpu', label: 'helper CPU s', better: 'lower', digits: 2 },
      { key: 'clientCpu', label: 'CLI CPU s', better: 'lower', digits: 2 },
      { key: 'totalCpu', label: 'total CPU s', better: 'lower', digits: 2 },
    ],
    schedule: (quick) => (quick ? { runs: 2, warmup: 0 } : { runs: 3, warmup: 1 }),

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      const load = logLoad(ctx.quick ? 50 * MB : 500 * MB);
      // berth's default is 10m x 5: this keeps the whole output in berth (~1.7x the payload
      // in CRI lines); docker's json-file (~2.2x) prunes its oldest file near the end.
      const limits = { maxSize: '100m', maxFiles: 10 };
      ctx.log('starting berthd');
      const b = await startBerth(BENCH_CGROUP);
      berth = b.d;
      const cg = CpuGroup.create(CLIENT_CGROUP);
      clients = cg;
      const engines = [b.e, ...ctx.peers];

      const sample = async (e: Engine, signal: AbortSignal): Promise<Measured> => {
        const id = await createWriter(e, load, limits, signal);
        try {
          const inGroup = (args: string[]) =>
            cliInGroup(e, cg, args, { signal, timeoutMs: 30 * 60_000 });
          const before = snap(e, cg);
          const t0 = process.hrtime.bigint();
          await inGroup(['start', id]);
          const w = await inGroup(e.waitArgs(id));
          const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
          if (w.stdout.trim().split('\n').pop() !== '0') {
            throw new Error(`${e.name}: the writer exited with ${w.stdout.trim()}`);
          }
          // Untimed: the helper finishes (last log bytes, exit, clean-up) before CPU is read.
          await waitUntil(() => e.helpers().length === 0, 15_000);
          const after = snap(e, cg);
          const agents: Record<string, number> = {};
          for (const [pid, a] of after.agents) {
            const was = before.agents.get(pid)?.ns ?? 0;
            agents[a.name] = (agents[a.name] ?? 0) + (a.ns - was) / 1e9;
          }
          const agentCpu = Object.values(agents).reduce((x, y) => x + y, 0);
          const helperCpu = (after.helperNs - before.helperNs) / 1e9;
          const clientCpu = (after.clientNs - before.clientNs) / 1e9;
          const t = await inspectTimes(e, id);
          runS.set(e.name, [...(runS.get(e.name) ?? []), (t.finishedAt - t.startedAt) / 1000]);
          if (t.droppedBytes !== undefined && t.droppedBytes > 0) {
            notes.push(`${e.name} dropped ${t.droppedBytes} bytes of output in one run`);
          }
          return {
            values: {
              wall: wallS,
              mbps: load.bytes / MB / wallS,
              agentCpu: e.agents().length > 0 || agentCpu > 0 ? agentCpu : Number.NaN,
              helperCpu,
              clientCpu,
              totalCpu: agentCpu + helperCpu + clientCpu,
            },
            detail: {
              id,
              agents,
              runS: (t.finishedAt - t.startedAt) / 1000,
              droppedBytes: t.droppedBytes,
            },
          };
        } finally {
          await cli(e, e.rmArgs([id]), { timeoutMs: 120_000 }).catch(() => undefined);
        }
      };

      const subjects: Subject[] = engines.map((e) => ({
        name: e.name,
        label:
          `${e.name} start + wait` +
          (e.logFlags(limits).length > 0 ? ` (${limits.maxSize} x ${limits.maxFiles})` : ''),
        role: e.name === 'berth' ? 'subject' : 'peer',
        // docker takes ~25 s for the 500 MB, the others a few: two samples, no warm-up, to
        // keep the suite within its time.
        ...(e.name === 'docker' && !ctx.quick ? { maxRuns: DOCKER_RUNS, warmup: false } : {}),
        sample: (signal) => sample(e, signal),
      }));

      // Context: bare runc with the container's stdout a plain file: what writing the
      // bytes costs with no log path at all (no line framing, no timestamps, no rotation).
      const bare = await BareRunc.mkdtemp('benchlogs');
      runc = bare;
      await bare.build();
      subjects.push({
        name: 'runc',
        label: 'runc run, stdout to a file',
        role: 'context',
        async sample(signal) {
          const { runArgs } = await bare.prepare(['sh', '-c', load.script]);
          const out = join(bare.dir, 'out.log');
          const fd = openSync(out, 'w');
          try {
            const r = await runOk(RUNC, runArgs, {
              signal,
              stdoutFd: fd,
              timeoutMs: 10 * 60_000,
            });
            const wall = r.ms / 1000;
            return {
              values: {
                wall,
                mbps: load.bytes / MB / wall,
                agentCpu: NaN,
                helperCpu: NaN,
                clientCpu: NaN,
                totalCpu: NaN,
              },
            };
          } finally {
            closeSync(fd);
            await rm(out, { force: true });
          }
        },
      });
      notes.push(
        `payload ${(load.bytes / MB).toFixed(0)} MB in ${load.lines} lines of ` +
          `${load.bytes / load.lines} bytes; berth and docker: max-size=${limits.maxSize}, ` +
          `max-file=${limits.maxFiles} (berth keeps it all, docker's json-file is larger and ` +
          `prunes ${ctx.quick ? 'nothing' : 'its oldest file'}); podman: one k8s-file`,
        'agent: berthd | dockerd + containerd; helper: berth-monitor | containerd-shim | ' +
          'conmon (+ runc, podman container cleanup); CLI: the start and wait processes',
      );
      return subjects;
    },

    async teardown(ctx: BenchContext): Promise<string[]> {
      const left = await removePeerContainers(ctx.peers);
      left.push(...(await stopBerth(berth)));
      berth = undefined;
      if (runc) {
        left.push(...(await runc.remove()));
        runc = undefined;
      }
      left.push(...sweepBenchCgroups(clients));
      clients = undefined;
      return left;
    },

    notes: () => {
      const rs = [...runS].map(([n, v]) => `${n} ${summarize(v).median.toFixed(2)} s`);
      return rs.length === 0
        ? notes
        : [
            ...notes,
            `run time as each engine recorded it (StartedAt to FinishedAt, median): ` +
              `${rs.join(', ')}; the rest of the wall time is the CLIs and start-up`,
          ];
    },
  };
}
