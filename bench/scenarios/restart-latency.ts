// restart-latency: how soon a crashed container runs again under a restart policy. Each
// sample runs one container, `run -d --restart always <image> sh -c SCRIPT`, whose every run
// stamps the time (µs, from adjtimex) when it starts and just before it exits 1 after
// 0.3 s, and times only its FIRST restart, two ways: from the engine's own event stream
// (die → the next start: berth's `restart`, docker's and podman's `start`), and from inside
// the container (the last stamp of run 1 → the first stamp of run 2: the downtime the
// workload sees). Then the container is removed. berth runs with its defaults (100 ms first
// delay, doubling, like docker's) and with --restart-delay 0s (podman has no delay).
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchDaemon } from '../lib/berthd.ts';
import { cli, printedId, startBerth, type Engine } from '../lib/engines.ts';
import { BENCH_CGROUP } from '../lib/host.ts';
import { summarize } from '../lib/stats.ts';
import { removePeerContainers, stopBerth, sweepBenchCgroups } from '../lib/teardown.ts';
import type { BenchContext, Measured, Scenario, Subject } from '../lib/types.ts';
import { warmUpEachRow } from '../lib/warmup.ts';

// Two stamps a run (tv_sec and tv_usec lines of adjtimex, which reads the clock with µs;
// busybox's date has no %N here), 0.3 s apart, then a failure.
const SCRIPT = 'adjtimex|grep tv_;sleep 0.3;adjtimex|grep tv_;exit 1';
const FIRST_RUN_MS = 300;
// How long to wait for the first restart to show in the logs and in the events.
const RESTART_TIMEOUT_MS = 15_000;

// One event: its action and the time the engine gave it (ns since the epoch).
interface Ev {
  readonly action: string;
  readonly ns: bigint;
  readonly attributes?: Record<string, string>;
}

// RFC 3339 with up to nine fractional digits, to ns.
function rfc3339Ns(s: string): bigint {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(s);
  const ms = m ? Date.parse(`${m[1]}${m[3]}`) : NaN;
  if (!m || Number.isNaN(ms)) throw new Error(`not an RFC 3339 time: ${s}`);
  return BigInt(ms) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

// Each engine's event CLI (not following: the events up to now) and its event shape.
interface EventSource {
  args(id: string): string[];
  parse(line: string): Ev;
  readonly die: string;
  readonly start: string;
}

const SOURCES: Record<Engine['name'], EventSource> = {
  berth: {
    args: (id) => ['events', '--since', '60s', '--filter', `container=${id}`, '--format', 'json'],
    parse(line) {
      const e = JSON.parse(line) as {
        action: string;
        timeNano: string;
        attributes: Record<string, string>;
      };
      return { action: e.action, ns: BigInt(e.timeNano), attributes: e.attributes };
    },
    die: 'die',
    start: 'restart',
  },
  docker: {
    args: (id) => [
      'events',
      '--since',
      '60s',
      '--until',
      '0s',
      '--filter',
      `container=${id}`,
      '--format',
      '{{json .}}',
    ],
    parse(line) {
      // timeNano is a JSON number beyond 2^53: read its digits.
      const e = JSON.parse(line) as { Action: string };
      const ns = /"timeNano":(\d+)/.exec(line)?.[1];
      if (ns === undefined) throw new Error(`docker event without timeNano: ${line}`);
      return { action: e.Action, ns: BigInt(ns) };
    },
    die: 'die',
    start: 'start',
  },
  podman: {
    args: (id) => [
      'events',
      '--since',
      '60s',
      '--stream=false',
      '--filter',
      `container=${id}`,
      '--format',
      'json',
    ],
    parse(line) {
      const e = JSON.parse(line) as { Status: string; Time: string };
      return { action: e.Status, ns: rfc3339Ns(e.Time) };
    },
    die: 'died',
    start: 'start',
  },
};

// The stamps a container printed, in µs since the epoch, in order.
function stamps(out: string): number[] {
  const secs = [...out.matchAll(/time\.tv_sec:\s+(\d+)/g)].map((m) => Number(m[1]));
  const usecs = [...out.matchAll(/time\.tv_usec:\s+(\d+)/g)].map((m) => Number(m[1]));
  return secs.slice(0, usecs.length).map((s, i) => s * 1e6 + (usecs[i] ?? NaN));
}

// The first exit and the start that follows it.
function firstRestart(evs: readonly Ev[], src: EventSource): { die: Ev; start: Ev } | undefined {
  const i = evs.findIndex((e) => e.action === src.die);
  const die = evs[i];
  const start = i < 0 ? undefined : evs.slice(i + 1).find((e) => e.action === src.start);
  return die && start ? { die, start } : undefined;
}

interface Row {
  readonly name: string;
  readonly label: string;
  readonly role: 'subject' | 'peer';
  readonly group: string;
  readonly engine: Engine;
  readonly flags: readonly string[];
}

export function restartLatency(): Scenario {
  let berth: BenchDaemon | undefined;
  const notes: string[] = [];
  // Every sample's values per row label (the scenario does its own warm-up in setup).
  const taken = new Map<string, { gap: number; down: number }[]>();

  const p90s = (): string[] => {
    const out = [...taken].map(([label, v]) => {
      const g = summarize(v.map((x) => x.gap));
      const dn = summarize(v.map((x) => x.down));
      return `${label}: ${g.p90.toFixed(1)}, ${dn.p90.toFixed(1)} (n ${g.n})`;
    });
    return out.length === 0 ? [] : [`p90 of die→start ms, down ms: ${out.join('; ')}`];
  };

  const sample = async (row: Row, signal: AbortSignal): Promise<Measured> => {
    const e = row.engine;
    const src = SOURCES[e.name];
    const r = await cli(
      e,
      ['run', '-d', ...e.runFlags, ...row.flags, e.image, 'sh', '-c', SCRIPT],
      { signal, stdout: 'all' },
    );
    const id = printedId(r.stdout);
    try {
      const deadline = Date.now() + RESTART_TIMEOUT_MS;
      let st: number[] = [];
      // No restart can show before run 1 has slept.
      await sleep(FIRST_RUN_MS, undefined, { signal });
      // Run 1's two stamps and run 2's first.
      while (
        (st = stamps((await cli(e, ['logs', id], { signal, stdout: 'all' })).stdout)).length < 3
      ) {
        if (Date.now() > deadline) throw new Error(`${e.name} ${id}: no restart in the logs`);
        await sleep(100, undefined, { signal });
      }
      let evs: Ev[] = [];
      let first: { die: Ev; start: Ev } | undefined;
      for (;;) {
        const out = (await cli(e, src.args(id), { signal, stdout: 'all' })).stdout;
        evs = out
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => src.parse(l))
          // Stable: events of the same instant keep the engine's order.
          .sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0));
        first = firstRestart(evs, src);
        if (first) break;
        if (Date.now() > deadline) {
          throw new Error(
            `${e.name} ${id}: no ${src.die} and ${src.start} in its events: ` +
              evs.map((x) => x.action).join(' '),
          );
        }
        await sleep(100, undefined, { signal });
      }
      const [, exitUs = NaN, runUs = NaN] = st;
      const dieUs = Number(first.die.ns / 1000n);
      const gap = Number(first.start.ns - first.die.ns) / 1e6;
      const down = (runUs - exitUs) / 1000;
      taken.set(row.label, [...(taken.get(row.label) ?? []), { gap, down }]);
      return {
        values: { gap, down, exitToDie: (dieUs - exitUs) / 1000 },
        detail: {
          id,
          runDMs: r.ms,
          stampsUs: st.slice(0, 4),
          events: evs.map((x) => ({
            action: x.action,
            ns: x.ns.toString(),
            ...(x.attributes?.['delayMs'] ? { delayMs: x.attributes['delayMs'] } : {}),
          })),
        },
      };
    } finally {
      await cli(e, e.rmArgs([id]), { timeoutMs: 60_000 }).catch(() => undefined);
    }
  };

  return {
    name: 'restart-latency',
    description: 'first restart of a container that fails after 0.3 s, --restart always',
    metrics: [
      { key: 'gap', label: 'die→start ms', better: 'lower' },
      { key: 'down', label: 'down ms', better: 'lower' },
      // A difference that may be 0 (berth's ms times: even a hair below): not divided.
      { key: 'exitToDie', label: 'exit→die ms', better: 'lower', compare: false },
    ],
    // Warm-up is done in setup (one untimed sample per row; not with --quick), so that every
    // sample the runner takes is in the p90s of the notes.
    schedule: (quick) => (quick ? { runs: 3, warmup: 0 } : { runs: 12, warmup: 0 }),

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      ctx.log('starting berthd');
      const b = await startBerth(BENCH_CGROUP);
      berth = b.d;
      const always = ['--restart', 'always'];
      // The peer's row, when that peer is set up.
      const peer = (name: Engine['name'], label: string, group: string): Row[] =>
        ctx.peers
          .filter((p) => p.name === name)
          .map((p) => ({ name: p.name, label, role: 'peer', group, engine: p, flags: always }));
      const rows: Row[] = [
        {
          name: 'berth',
          label: 'berth --restart always (100 ms, doubling)',
          role: 'subject',
          group: 'first delay 100 ms',
          engine: b.e,
          flags: always,
        },
        ...peer('docker', 'docker --restart always (100 ms, doubling)', 'first delay 100 ms'),
        {
          name: 'berth',
          label: 'berth --restart always --restart-delay 0s',
          role: 'subject',
          group: 'no delay',
          engine: b.e,
          flags: [...always, '--restart-delay', '0s'],
        },
        ...peer('podman', 'podman --restart always (no delay)', 'no delay'),
      ];
      const subjects = rows.map((row): Subject => ({
        name: row.name,
        label: row.label,
        role: row.role,
        group: row.group,
        sample: (signal) => sample(row, signal),
      }));
      await warmUpEachRow(subjects, ctx);
      taken.clear();
      notes.push(
        `container: sh -c '${SCRIPT}'; each sample is a new container, removed (rm -f) once ` +
          'its first restart is in its logs and in its events',
        "die→start: the engine's event times, die to the next start (berth: die to restart; " +
          "podman: died to start); berth's journal keeps ms, docker's and podman's ns",
        'down: inside the container, the last stamp of run 1 (just before exit 1) to the ' +
          'first of run 2: what the workload sees (exit, the policy delay, runc create and ' +
          'start, sh starting)',
        'exit→die: that last stamp to the die event: how late the engine stamps the exit ' +
          "(berth: the monitor's reap; docker: dockerd handling containerd's exit event; " +
          'podman: `podman container cleanup`, which conmon starts after the exit)',
        'policies: berth 100 ms first delay, x2 per restart to 1 min, reset after a 10 s run ' +
          '(--restart-delay 0s: none); docker 20.10 the same (restartmanager: 100 ms doubling ' +
          "to 1 min, reset after 10 s); podman 4.3 none: conmon's exit command restarts at once, " +
          'with no backoff',
      );
      return subjects;
    },

    async teardown(ctx: BenchContext): Promise<string[]> {
      const left = await removePeerContainers(ctx.peers, { recheck: true });
      left.push(...(await stopBerth(berth, { rmTimeoutMs: 120_000, settleMs: 10_000 })));
      berth = undefined;
      left.push(...sweepBenchCgroups());
      return left;
    },

    notes: () => [...notes, ...p90s()],
  };
}
