// start-stop: a detached start and a stop, each timed on its own through the engine's CLI.
// Start: `run -d <image> sleep 1000`, until the CLI returns (the container is running).
// Stop: `stop -t 10` of a running container whose shell exits on SIGTERM, until the CLI
// returns (the container has exited). Everything else (the stop row's `run -d`, removal)
// is done untimed around the clock.
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchDaemon } from '../lib/berthd.ts';
import { cli, inspectTimes, printedId, startBerth, type Engine } from '../lib/engines.ts';
import { BENCH_CGROUP } from '../lib/host.ts';
import { runOk, timedOk } from '../lib/proc.ts';
import { removePeerContainers, stopBerth, sweepBenchCgroups } from '../lib/teardown.ts';
import type { BenchContext, Measured, Scenario, Subject } from '../lib/types.ts';

// PID 1 of the stop row: exits 0 on SIGTERM. busybox sh runs `sleep` in-process (a NOFORK
// applet), so the signal cuts the sleep short and the trap runs within a few ms.
const TRAP = 'trap "exit 0" TERM; while :; do sleep 0.1; done';
// From `run -d` returning to the stop: time for sh to set its trap.
const SETTLE_MS = 200;
const STOP_TIMEOUT_S = 10;

export function startStop(): Scenario {
  let berth: BenchDaemon | undefined;
  const notes: string[] = [];

  const rm = (e: Engine, id: string) => cli(e, e.rmArgs([id]), { timeoutMs: 60_000 });

  // run -d ... sleep 1000, timed to the CLI's exit; removed after, untimed.
  const start = async (e: Engine, signal: AbortSignal): Promise<Measured> => {
    const c = e.command(['run', '-d', ...e.runFlags, e.image, 'sleep', '1000']);
    let id: string | undefined;
    let ms: number;
    try {
      const r = await runOk(c.file, c.args, { env: c.env, signal });
      ms = r.ms;
      id = printedId(r.stdout);
    } finally {
      if (id !== undefined) await rm(e, id);
    }
    return { values: { ms } };
  };

  // stop -t 10 of a container that exits on SIGTERM, timed to the CLI's exit. It must have
  // exited 0 (the trap ran, not the SIGKILL after the timeout).
  const stop = async (e: Engine, signal: AbortSignal): Promise<Measured> => {
    const r = await cli(e, ['run', '-d', ...e.runFlags, e.image, 'sh', '-c', TRAP], { signal });
    const id = printedId(r.stdout);
    try {
      await sleep(SETTLE_MS, undefined, { signal });
      const c = e.command(['stop', '-t', String(STOP_TIMEOUT_S), id]);
      const ms = await timedOk(c.file, c.args, { env: c.env, signal });
      const t = await inspectTimes(e, id);
      if (t.exitCode !== 0) {
        throw new Error(`${e.name}: the container exited ${t.exitCode}, not 0 from its trap`);
      }
      return { values: { ms }, detail: { exitCode: t.exitCode } };
    } finally {
      await rm(e, id);
    }
  };

  return {
    name: 'start-stop',
    description: 'run -d (detached start) and stop -t 10 (of a container that exits on SIGTERM)',
    schedule: (quick) => (quick ? { runs: 4, warmup: 1 } : { runs: 10, warmup: 1 }),

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      ctx.log('starting berthd');
      const b = await startBerth(BENCH_CGROUP);
      berth = b.d;
      const engines = [b.e, ...ctx.peers];
      const row = (e: Engine, what: 'start' | 'stop'): Subject => ({
        name: e.name,
        label:
          what === 'start'
            ? `${e.name} run -d ${e.image} sleep 1000`
            : `${e.name} stop -t ${STOP_TIMEOUT_S} (exits on SIGTERM)`,
        role: e.name === 'berth' ? 'subject' : 'peer',
        group: what === 'start' ? 'run -d' : 'stop',
        sample: (signal) => (what === 'start' ? start(e, signal) : stop(e, signal)),
      });
      notes.push(
        'run -d: spawn to exit of the CLI, which returns once the container runs; stop: ' +
          `spawn to exit of \`stop -t ${STOP_TIMEOUT_S}\`, which returns once it has exited`,
        `stop row's container: sh -c '${TRAP}', stopped ${SETTLE_MS} ms after run -d ` +
          'returned; busybox sh runs sleep in-process, so SIGTERM interrupts it and the trap ' +
          'exits at once (2-10 ms on this host outside a container); each stop must end in ' +
          'exit code 0, not the SIGKILL after the timeout',
        'all containers --network none; run -d and rm of the stop row, and rm of the start ' +
          "row's container, are untimed",
      );
      return [...engines.map((e) => row(e, 'start')), ...engines.map((e) => row(e, 'stop'))];
    },

    async teardown(ctx: BenchContext): Promise<string[]> {
      const left = await removePeerContainers(ctx.peers);
      left.push(...(await stopBerth(berth)));
      berth = undefined;
      left.push(...sweepBenchCgroups());
      return left;
    },

    notes: () => notes,
  };
}
