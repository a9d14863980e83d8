// ps: how long listing takes as containers pile up. `ps -a` and `ps` (running only) through
// each engine's CLI with 1, then 100, then 1000 containers, in phases (runner.ts): 1 and 100
// running `sleep 3600`, then 900 more only created (not started: 1000 running containers
// would take minutes to start and stop and are not what ps is about), so at 1000 `ps -a`
// lists 1000 and `ps` the 100 running among them. The containers are made untimed through
// APIs a few at a time (bulk.ts: berthd's, dockerd's, a podman service for podman's
// created-only ones, podman's `run -d` for its running ones), and removed at teardown.
import { makeContainers, removeContainers } from '../lib/bulk.ts';
import type { BenchDaemon } from '../lib/berthd.ts';
import { cli, startBerth, type Engine } from '../lib/engines.ts';
import { BENCH_CGROUP } from '../lib/host.ts';
import { removePeerContainers, stopBerth, sweepBenchCgroups } from '../lib/teardown.ts';
import type { BenchContext, Measured, Scenario, Subject } from '../lib/types.ts';

// At most this many of a level's containers run; the rest are only created.
const MAX_RUNNING = 100;
const CMD = ['sleep', '3600'];

interface Made {
  running: string[];
  created: string[];
}

// Lines of a ps table (the header line excluded).
const tableRows = (stdout: string) => stdout.split('\n').filter((l) => l.trim() !== '').length - 1;

export function ps(): Scenario {
  let berth: BenchDaemon | undefined;
  const notes: string[] = [];
  // Per engine, in the order they are compared (berth first).
  let engines: Engine[] = [];
  const made = new Map<Engine, Made>();
  let levels: number[] = [];
  let level = 0;
  // Set-up time per engine and level (s): making containers, for the notes.
  const setupTimes: string[] = [];

  // Brings every engine to `n` containers (min(n, 100) running); a peer that fails is left
  // out of this phase and the next ones.
  const grow = async (ctx: BenchContext, n: number): Promise<void> => {
    const running = Math.min(n, MAX_RUNNING);
    for (const e of [...engines]) {
      const m = made.get(e) ?? { running: [], created: [] };
      made.set(e, m);
      const t0 = performance.now();
      try {
        const more = running - m.running.length;
        if (more > 0)
          await makeContainers(e, more, { cmd: CMD, start: true }, ctx.signal, m.running);
        const idle = n - running - m.created.length;
        if (idle > 0) {
          await makeContainers(e, idle, { cmd: CMD, start: false }, ctx.signal, m.created);
        }
      } catch (err) {
        if (e.name === 'berth' || ctx.signal.aborted) throw err;
        const why = err instanceof Error ? err.message : String(err);
        notes.push(`${e.name} left out from ${n} containers on: making them failed: ${why}`);
        ctx.log(`ps: ${e.name} left out: ${why}`);
        engines = engines.filter((x) => x !== e);
        continue;
      }
      const s = (performance.now() - t0) / 1000;
      setupTimes.push(`${e.name} to ${n}: ${s.toFixed(1)} s`);
      ctx.log(`ps: ${e.name} has ${n} containers (${running} running) after ${s.toFixed(1)} s`);
    }
  };

  // One `ps` call through the CLI; it must list exactly `want` containers.
  const psCall = async (e: Engine, all: boolean, want: number, signal: AbortSignal) => {
    const r = await cli(e, all ? ['ps', '-a'] : ['ps'], { signal, stdout: 'all' });
    const rows = tableRows(r.stdout);
    if (rows !== want) {
      throw new Error(`${e.name} ps${all ? ' -a' : ''} listed ${rows} containers of ${want}`);
    }
    return { values: { ms: r.ms }, detail: { rows, bytes: r.stdoutBytes } } as Measured;
  };

  const subjectsFor = (n: number): Subject[] => {
    const running = Math.min(n, MAX_RUNNING);
    const all = `ps -a, ${n} container${n === 1 ? '' : 's'}`;
    const run = running === n ? `ps, ${n} running` : `ps, ${running} running of ${n}`;
    const row = (e: Engine, a: boolean): Subject => ({
      name: e.name,
      // The level in the label too: the terminal table has no group column.
      label: a ? `${e.name} ps -a (${n})` : `${e.name} ps (${running} running of ${n})`,
      role: e.name === 'berth' ? 'subject' : 'peer',
      group: a ? all : run,
      sample: (signal) => psCall(e, a, a ? n : running, signal),
    });
    return [...engines.map((e) => row(e, true)), ...engines.map((e) => row(e, false))];
  };

  const next = async (ctx: BenchContext): Promise<readonly Subject[] | undefined> => {
    const n = levels[level++];
    if (n === undefined) return undefined;
    await grow(ctx, n);
    return subjectsFor(n);
  };

  return {
    name: 'ps',
    description: 'ps -a and ps (running) with 1, 100 and 1000 containers (100 running at most)',
    schedule: (quick) => (quick ? { runs: 3, warmup: 1 } : { runs: 6, warmup: 1 }),

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      levels = ctx.quick ? [1, 100] : [1, 100, 1000];
      level = 0;
      ctx.log('starting berthd');
      const b = await startBerth(BENCH_CGROUP);
      berth = b.d;
      engines = [b.e, ...ctx.peers];
      notes.push(
        `containers: sleep 3600, --network none; up to ${MAX_RUNNING} running, the rest ` +
          'created only (never started); made untimed through the APIs of berthd and ' +
          "dockerd, podman's run -d (running ones) and a podman system service (created " +
          'ones)',
        'wall ms: spawn to exit of the CLI, default table output; every call must list the ' +
          'expected number of rows',
      );
      const first = await next(ctx);
      if (!first) throw new Error('ps: no levels');
      return first;
    },

    nextPhase: next,

    async teardown(ctx: BenchContext): Promise<string[]> {
      const left: string[] = [];
      // Most of the removal, fast: the API a few at a time, podman's CLI once.
      for (const [e, m] of made) {
        const t0 = performance.now();
        await removeContainers(e, [...m.running, ...m.created]).catch((err: unknown) =>
          left.push(`${e.name}: bulk removal failed: ${String(err)}`),
        );
        ctx.log(
          `ps: ${e.name}: removed its containers in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
        );
      }
      made.clear();
      left.push(...(await removePeerContainers(ctx.peers, { expected: true, recheck: true })));
      left.push(
        ...(await stopBerth(berth, { expected: true, rmTimeoutMs: 600_000, settleMs: 30_000 })),
      );
      berth = undefined;
      left.push(...sweepBenchCgroups());
      return left;
    },

    notes: () => [
      ...notes,
      ...(setupTimes.length > 0 ? [`making the containers took ${setupTimes.join(', ')}`] : []),
    ],
  };
}
