// logs-read: reading a container's log history back through each engine's CLI, output to
// /dev/null: the whole history (~200 MB of output) with berth, docker and podman; then the
// last 100 lines and the second half (--since a time in the middle) of a ~1 GB history,
// with berth (and docker's --tail 100). The histories are written once, in set-up, by the
// log-throughput workload; every read is checked once, untimed, for its size.
import type { BenchDaemon } from '../lib/berthd.ts';
import { cli, cliInGroup, inspectTimes, startBerth, type Engine } from '../lib/engines.ts';
import { BENCH_CGROUP, CLIENT_CGROUP } from '../lib/host.ts';
import { CpuGroup, procCpuNs } from '../lib/sysstat.ts';
import { removePeerContainers, stopBerth, sweepBenchCgroups } from '../lib/teardown.ts';
import type { BenchContext, Scenario, Subject } from '../lib/types.ts';
import { createWriter, limitsFor, logLoad, MB, type LogLoad } from '../lib/workload.ts';

const LONG = 30 * 60_000;
const PEER_RUNS = 2;

const agentCpuNs = (e: Engine) => e.agents().reduce((a, p) => a + (procCpuNs(p.pid) ?? 0), 0);

// Writes a history of `load` and waits for the writer's exit; returns the container id.
async function history(e: Engine, load: LogLoad, signal: AbortSignal): Promise<string> {
  const id = await createWriter(e, load, limitsFor(load.bytes), signal);
  await cli(e, ['start', id], { signal });
  const w = await cli(e, e.waitArgs(id), { signal, timeoutMs: LONG });
  if (w.stdout.trim() !== '0') throw new Error(`${e.name}: the writer exited with ${w.stdout}`);
  const t = await inspectTimes(e, id);
  if (t.droppedBytes) throw new Error(`${e.name} dropped ${t.droppedBytes} bytes of output`);
  return id;
}

export function logsRead(): Scenario {
  let berth: BenchDaemon | undefined;
  let clients: CpuGroup | undefined;
  const notes: string[] = [];

  return {
    name: 'logs-read',
    description: 'reading a log history back, output to /dev/null',
    metrics: [
      { key: 'ms', label: 'wall ms', better: 'lower', digits: 0 },
      { key: 'mbps', label: 'MB/s', better: 'higher', digits: 0 },
      { key: 'agentCpu', label: 'agent CPU s', better: 'lower', digits: 2 },
      { key: 'cliCpu', label: 'CLI CPU s', better: 'lower', digits: 2 },
    ],
    // The untimed size check of each read is the warm-up (it also fills the page cache).
    schedule: (quick) => (quick ? { runs: 2, warmup: 0 } : { runs: 3, warmup: 0 }),

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      // Sizes and runs keep the suite within 15 minutes: docker writes ~20 MB/s and reads
      // ~10 MB/s, podman reads ~13 MB/s.
      const whole = logLoad(ctx.quick ? 20 * MB : 100 * MB);
      const big = logLoad(ctx.quick ? 100 * MB : 500 * MB);
      const wholeMB = `${(whole.bytes / MB).toFixed(0)} MB`;
      const bigMB = `${(big.bytes / MB).toFixed(0)} MB`;
      ctx.log('starting berthd');
      const b = await startBerth(BENCH_CGROUP);
      berth = b.d;
      const cg = CpuGroup.create(CLIENT_CGROUP);
      clients = cg;
      const subjects: Subject[] = [];

      // A timed read; `bytes` from its untimed check gives the MB/s (NaN: not meaningful).
      const reader = async (
        e: Engine,
        group: string,
        args: string[],
        label: string,
        expect: { bytes?: number; lines?: number },
        mbps: boolean,
      ): Promise<{ subject: Subject; bytes: number }> => {
        const check = await cli(e, args, {
          signal: ctx.signal,
          stdout: expect.lines !== undefined ? 'all' : 'count',
          timeoutMs: LONG,
        });
        const got = check.stdoutBytes;
        if (expect.bytes !== undefined && got !== expect.bytes) {
          notes.push(`${e.name} ${label}: returned ${got} bytes, ${expect.bytes} written`);
        }
        if (expect.lines !== undefined) {
          const n = check.stdout.split('\n').filter(Boolean).length;
          if (n !== expect.lines) notes.push(`${e.name} ${label}: ${n} lines, not ${expect.lines}`);
        }
        const subject: Subject = {
          name: e.name,
          label: `${e.name} ${label}`,
          role: e.name === 'berth' ? 'subject' : 'peer',
          group,
          // The peers' whole reads take 8-15 s each.
          ...(e.name !== 'berth' && mbps && !ctx.quick ? { maxRuns: PEER_RUNS } : {}),
          async sample(signal) {
            const agents0 = agentCpuNs(e);
            const cli0 = cg.usageNs();
            const r = await cliInGroup(e, cg, args, {
              signal,
              stdout: 'ignore',
              timeoutMs: LONG,
            });
            const agentCpu = (agentCpuNs(e) - agents0) / 1e9;
            return {
              values: {
                ms: r.ms,
                mbps: mbps ? got / MB / (r.ms / 1000) : NaN,
                agentCpu: e.agents().length > 0 ? agentCpu : NaN,
                cliCpu: (cg.usageNs() - cli0) / 1e9,
              },
            };
          },
        };
        return { subject, bytes: got };
      };

      const engines = [b.e, ...ctx.peers];
      for (const e of engines) {
        ctx.log(`${e.name}: writing a ${wholeMB} history`);
        const id = await history(e, whole, ctx.signal);
        const r = await reader(
          e,
          wholeMB,
          ['logs', id],
          `logs (${wholeMB})`,
          { bytes: whole.bytes },
          true,
        );
        subjects.push(r.subject);
      }
      const docker = ctx.peers.find((p) => p.name === 'docker');
      for (const e of docker ? [b.e, docker] : [b.e]) {
        ctx.log(`${e.name}: writing a ${bigMB} history`);
        const id = await history(e, big, ctx.signal);
        const tail = await reader(
          e,
          `tail, ${bigMB}`,
          ['logs', '--tail', '100', id],
          `logs --tail 100 (${bigMB})`,
          { lines: 100 },
          false,
        );
        subjects.push(tail.subject);
        if (e.name !== 'berth') continue;
        const t = await inspectTimes(e, id);
        const mid = new Date((t.startedAt + t.finishedAt) / 2).toISOString();
        const since = await reader(
          e,
          `since, ${bigMB}`,
          ['logs', '--since', mid, id],
          `logs --since <middle> (${bigMB})`,
          {},
          true,
        );
        subjects.push(since.subject);
        notes.push(
          `--since <middle>: ${mid}, halfway between start and exit; it returns ` +
            `${(since.bytes / MB).toFixed(0)} MB of ${bigMB}`,
        );
      }
      notes.push(
        'MB/s: output bytes returned per second; logs are read from the page cache ' +
          '(each read is done once, untimed, before the timed runs)',
        'agent CPU: berthd | dockerd + containerd during the read; CLI CPU: the logs process ' +
          '(podman reads the files itself); any berth command costs ~0.1 s of Node start-up',
        'berth and docker histories kept whole by max-size=100m and enough max-file; podman: one k8s-file',
      );
      return subjects;
    },

    async teardown(ctx: BenchContext): Promise<string[]> {
      // The histories are kept until now.
      const left = await removePeerContainers(ctx.peers, { expected: true });
      left.push(...(await stopBerth(berth, { expected: true })));
      berth = undefined;
      left.push(...sweepBenchCgroups(clients));
      clients = undefined;
      return left;
    },

    notes: () => notes,
  };
}
