// readopt: how soon an agent that crashed serves again, with its containers still running.
// N `sleep 3600` containers run (100; --quick: 20); each sample kills the agent with
// SIGKILL (by pid), starts it again on the same state, and times from that spawn until its
// API answers and until its container list shows all N running. berth: berthd, which
// re-adopts every container (its monitors kept them running) before it listens. docker,
// when it is a peer: dockerd with live-restore (set for this scenario), which restores its
// containers from containerd and the shims that kept them. podman has no agent to crash.
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchDaemon } from '../lib/berthd.ts';
import { makeContainers, removeContainers } from '../lib/bulk.ts';
import { startBerth } from '../lib/engines.ts';
import { BENCH_CGROUP } from '../lib/host.ts';
import { asRestartable, type RestartablePeer } from '../lib/peers.ts';
import { removePeerContainers, stopBerth, sweepBenchCgroups } from '../lib/teardown.ts';
import type { BenchContext, Measured, Scenario, Subject } from '../lib/types.ts';
import { unixRequest } from '../lib/unix-http.ts';

const CMD = ['sleep', '3600'];
// How often the API is asked while the agent starts.
const POLL_MS = 5;
const READY_TIMEOUT_MS = 60_000;

const msSince = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

// Polls until cond() is true; throws after the timeout or when the agent has exited.
async function pollUntil(
  what: string,
  cond: () => Promise<boolean>,
  exited: () => boolean,
  signal: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    signal.throwIfAborted();
    if (await cond().catch(() => false)) return;
    if (exited()) throw new Error(`${what}: the agent exited`);
    if (Date.now() > deadline) throw new Error(`${what}: not within ${READY_TIMEOUT_MS / 1000} s`);
    await sleep(POLL_MS, undefined, { signal });
  }
}

// The agent's API answers at all.
const pings = (socket: string, path: string) => async () =>
  (await unixRequest(socket, path, { agent: false })).status === 200;

// Its list of running containers (what `ps` shows) has all n, running.
const listsAll = (socket: string, path: string, n: number) => async () => {
  const r = await unixRequest(socket, path, { agent: false });
  if (r.status !== 200) return false;
  const list = JSON.parse(r.body) as { State?: string }[];
  return list.filter((c) => c.State === 'running').length === n;
};

// berthd's own measure: the `containers reconciled` line (pino JSON) of its log.
function reconciled(log: string): { ms: number; adopted: number; line: string } | undefined {
  for (const line of log.split('\n')) {
    if (!line.includes('"containers reconciled"')) continue;
    try {
      const o = JSON.parse(line) as { ms?: number; adopted?: number };
      if (typeof o.ms === 'number') return { ms: o.ms, adopted: o.adopted ?? NaN, line };
    } catch {
      /* not JSON: keep looking */
    }
  }
  return undefined;
}

// dockerd's: its `Loading containers: start.` to `Loading containers: done.` (logrus times).
function dockerLoading(log: string): number {
  const at = (msg: string) => {
    const m = new RegExp(`time="([^"]+)"[^\\n]*msg="${msg}"`).exec(log);
    return m?.[1] === undefined ? NaN : Date.parse(m[1]);
  };
  return at('Loading containers: done.') - at('Loading containers: start.');
}

// berthd's log lines (pino JSON: ms since the epoch in `time`) as ms since the spawn.
function timeline(log: string, wall0: number): { msg: string; ms: number }[] {
  const out: { msg: string; ms: number }[] = [];
  for (const line of log.split('\n')) {
    try {
      const o = JSON.parse(line) as { time?: number; msg?: string };
      if (typeof o.time === 'number') out.push({ msg: o.msg ?? '', ms: o.time - wall0 });
    } catch {
      /* not a log line */
    }
  }
  return out;
}

const med = <K extends string>(rows: Record<K, number>[], k: K) =>
  median(rows.map((r) => r[k])).toFixed(0);

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length === 0 ? NaN : ((s[(s.length - 1) >> 1] ?? 0) + (s[s.length >> 1] ?? 0)) / 2;
};

export function readopt(): Scenario {
  let berth: BenchDaemon | undefined;
  // Per berth sample, from berthd's log (ms since the spawn): when reconciling started (its
  // `containers reconciled` line's time minus its ms), how long it took, and how long after
  // it `berthd ready` came (the API built and listening).
  const startup: { start: number; reconcile: number; after: number }[] = [];
  let docker: RestartablePeer | undefined;
  let dockerIds: string[] = [];
  const notes: string[] = [];

  return {
    name: 'readopt',
    description: 'agent killed (SIGKILL) and started again with N running containers',
    metrics: [
      { key: 'ms', label: 'all listed ms', better: 'lower' },
      { key: 'api', label: 'API ms', better: 'lower' },
      { key: 'reconcile', label: 'reconcile ms', better: 'lower' },
    ],
    schedule: (quick) => (quick ? { runs: 3, warmup: 0 } : { runs: 8, warmup: 1 }),

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      const n = ctx.quick ? 20 : 100;
      ctx.log('starting berthd');
      const b = await startBerth(BENCH_CGROUP);
      berth = b.d;
      const d = b.d;
      ctx.log(`berth: starting ${n} containers`);
      await makeContainers(b.e, n, { cmd: CMD, start: true }, ctx.signal);
      await pollUntil(
        'berth: containers running',
        listsAll(d.socket, '/v1/containers', n),
        () => d.exited,
        ctx.signal,
      );

      const subjects: Subject[] = [
        {
          name: 'berth',
          label: `berthd kill -9, restart, ${n} running`,
          role: 'subject',
          async sample(signal): Promise<Measured> {
            const killed = d.pid;
            await d.kill9();
            // Untimed: the containers outlive berthd (their monitors hold them).
            const monitors = d.monitors().length;
            if (monitors !== n) throw new Error(`${monitors} of ${n} monitors left after kill -9`);
            const wall0 = Date.now();
            const t0 = d.respawn();
            await pollUntil('berthd API', pings(d.socket, '/_ping'), () => d.exited, signal);
            const api = msSince(t0);
            await pollUntil(
              'berthd lists all running',
              listsAll(d.socket, '/v1/containers', n),
              () => d.exited,
              signal,
            );
            const listed = msSince(t0);
            // The log line comes before berthd listens; give its pipe a moment.
            let rec = reconciled(d.log);
            for (let i = 0; rec === undefined && i < 50; i++) {
              await sleep(20, undefined, { signal });
              rec = reconciled(d.log);
            }
            if (rec === undefined) throw new Error(`no "containers reconciled" in: ${d.log}`);
            if (rec.adopted !== n)
              throw new Error(`berthd adopted ${rec.adopted} of ${n}: ${rec.line}`);
            // Untimed: what a user would see.
            const ps = await d.cliOk(['ps', '-q'], { signal });
            const rows = ps.stdout.split('\n').filter(Boolean).length;
            if (rows !== n) throw new Error(`berth ps lists ${rows} of ${n} after the restart`);
            const tl = timeline(d.log, wall0);
            const done = tl.find((x) => x.msg === 'containers reconciled')?.ms;
            const ready = tl.find((x) => x.msg === 'berthd ready')?.ms;
            if (done !== undefined && ready !== undefined) {
              startup.push({ start: done - rec.ms, reconcile: rec.ms, after: ready - done });
            }
            return {
              values: { ms: listed, api, reconcile: rec.ms },
              detail: { killedPid: killed, pid: d.pid, adopted: rec.adopted, timeline: tl },
            };
          },
        },
      ];

      const peer = ctx.peers.map(asRestartable).find((p) => p !== undefined);
      if (peer) {
        try {
          ctx.log(`docker: live-restore on, starting ${n} containers`);
          docker = peer;
          await peer.setLiveRestore(true);
          dockerIds = [];
          await makeContainers(peer, n, { cmd: CMD, start: true }, ctx.signal, dockerIds);
          subjects.push({
            name: 'docker',
            label: `dockerd (live-restore) kill -9, restart, ${n} running`,
            role: 'peer',
            async sample(signal): Promise<Measured> {
              await peer.kill9();
              const { t0, logMark } = peer.respawn();
              const failed = (e: unknown) => {
                const log = peer.logSince(logMark).trim().slice(-1500);
                throw new Error(`${e instanceof Error ? e.message : String(e)}: ${log}`);
              };
              await pollUntil(
                'dockerd API',
                pings(peer.socket, '/_ping'),
                () => peer.exited,
                signal,
              ).catch(failed);
              const api = msSince(t0);
              await pollUntil(
                'dockerd lists all running',
                listsAll(peer.socket, '/containers/json', n),
                () => peer.exited,
                signal,
              ).catch(failed);
              const listed = msSince(t0);
              const log = peer.logSince(logMark);
              return {
                values: { ms: listed, api, reconcile: dockerLoading(log) },
                detail: { containerdRestarted: /starting containerd/.test(log) },
              };
            },
          });
        } catch (e) {
          if (ctx.signal.aborted) throw e;
          const why = e instanceof Error ? e.message : String(e);
          notes.push(`docker left out: ${why}`);
          ctx.log(`docker: left out: ${why}`);
        }
      }
      notes.push(
        `${n} containers (sleep 3600, --network none) running throughout, made through the API`,
        "all listed ms: from the agent's spawn until GET of its running containers (what ps " +
          `asks: berth /v1/containers, docker /containers/json; polled every ${POLL_MS} ms) ` +
          'lists all of them, running; API ms: until it answers /_ping; reconcile ms: the ' +
          "agent's own log, berthd's `containers reconciled` ms, dockerd's `Loading " +
          'containers: start.` to `done.`',
        'berth: berthd is SIGKILLed by pid; the monitors keep the containers (checked before ' +
          'the restart), and berthd re-adopts all of them before it listens: every sample ' +
          'also checks that it adopted all, and that `berth ps` (untimed) lists all',
        ...(peer && docker
          ? [
              'docker: dockerd with live-restore (daemon.json, reloaded with SIGHUP for this ' +
                'scenario, off again after): SIGKILLed by pid; its containerd dies with it ' +
                "(dockerd's parent-death signal) and the new dockerd starts another, which " +
                "reconnects to the shims that kept the containers (the dead one's pid file is " +
                'removed first, untimed: a zombie not yet reaped looks alive to dockerd)',
            ]
          : []),
        'podman: no agent (conmon per container), nothing to re-adopt',
      );
      return subjects;
    },

    async teardown(ctx: BenchContext): Promise<string[]> {
      const left: string[] = [];
      if (docker) {
        const p = docker;
        // A sample cut short may have left dockerd down: the peer must serve the scenarios
        // after this one.
        if (p.exited) {
          p.respawn();
          const ok = await pollUntil(
            'dockerd API',
            pings(p.socket, '/_ping'),
            () => p.exited,
            new AbortController().signal,
          )
            .then(() => true)
            .catch(() => false);
          if (!ok) left.push('docker: dockerd did not come back after a kill -9');
        }
        await removeContainers(p, dockerIds).catch((e: unknown) =>
          left.push(`docker: bulk removal failed: ${String(e)}`),
        );
        await p
          .setLiveRestore(false)
          .catch((e: unknown) => left.push(`docker: live-restore still on: ${String(e)}`));
        docker = undefined;
        dockerIds = [];
      }
      left.push(...(await removePeerContainers(ctx.peers, { expected: true, recheck: true })));
      if (berth?.exited) {
        // Cut short between kill and restart: berthd must run to remove its containers.
        berth.respawn();
        const d = berth;
        await pollUntil(
          'berthd API',
          pings(d.socket, '/_ping'),
          () => d.exited,
          new AbortController().signal,
        ).catch(() => left.push('berth: berthd did not come back after a kill -9'));
      }
      left.push(
        ...(await stopBerth(berth, { expected: true, rmTimeoutMs: 600_000, settleMs: 30_000 })),
      );
      berth = undefined;
      left.push(...sweepBenchCgroups());
      return left;
    },

    notes: () => [
      ...notes,
      ...(startup.length === 0
        ? []
        : [
            "berthd's start-up, medians from its log's times (ms since the spawn, ms " +
              `resolution): reconciling starts at ${med(startup, 'start')} ms (Node, the ` +
              'modules, the store, volumes, networks and the image seed before it), takes ' +
              `${med(startup, 'reconcile')} ms, and \`berthd ready\` follows ` +
              `${med(startup, 'after')} ms later (the API built and listening); each ` +
              "sample's log lines are in the JSON (timeline)",
          ]),
    ],
  };
}
