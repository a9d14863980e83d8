// events-subscriber: whether an event subscriber that has stopped reading slows the engine
// down. `run --rm busybox true` is timed with no subscriber, and with K stuck ones: raw
// connections to the engine's socket that send one GET of its event stream and never read,
// so the engine's socket buffers to them are full before the timed run starts (checked
// with `ss`). berth's followers read the journal from the store at their own pace: a full
// socket only stops that follower. dockerd publishes each event to every subscriber's queue
// and waits up to 100 ms for a full one. berthd's RSS is recorded with the stuck
// subscribers held while thousands more events are appended. podman has no daemon: its
// events are a file each `podman events` reads for itself, so there is nothing to block.
import { Agent } from 'node:http';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchDaemon } from '../lib/berthd.ts';
import { repeatConcurrently } from '../lib/concurrently.ts';
import { startBerth, type Engine } from '../lib/engines.ts';
import { BENCH_CGROUP } from '../lib/host.ts';
import { which } from '../lib/peers.ts';
import { run, timedOk } from '../lib/proc.ts';
import { summarize } from '../lib/stats.ts';
import { procRssKiB } from '../lib/sysstat.ts';
import { removePeerContainers, stopBerth, sweepBenchCgroups } from '../lib/teardown.ts';
import type { BenchContext, Measured, Scenario, Subject } from '../lib/types.ts';
import { expectStatus, unixRequest } from '../lib/unix-http.ts';
import { warmUpEachRow } from '../lib/warmup.ts';

// Stuck subscribers per stuck sample.
const SUBSCRIBERS = 4;
// A connection whose engine side has this much unread (ss Send-Q) counts as stuck: the
// kernel's default unix socket buffer holds ~210 KB.
const FULL_BYTES = 100_000;
// Quiet time before every timed run, with or without subscribers.
const SETTLE_MS = 100;
// create + rm through berth's API at a time while generating events.
const GEN_CONCURRENCY = 4;
// dockerd waits this long (pubsub timeout 100 ms) for a subscriber whose queue is full: a
// tag or untag call that takes this long means the subscribers are stuck all the way.
const DOCKER_SLOW_MS = 80;
// Events at most per docker fill (tag + untag, two per pair).
const DOCKER_FILL_MAX = 6000;
// A docker fill takes a few seconds: its stuck row takes fewer samples.
const DOCKER_STUCK_RUNS = 6;

// Clients that ask for the event stream and never read a byte of it: the socket is paused
// before it connects, so Node never reads from it.
class StuckSubscribers {
  private readonly socks: Socket[] = [];
  private readonly socketPath: string;
  private readonly path: string;

  constructor(socketPath: string, path: string) {
    this.socketPath = socketPath;
    this.path = path;
  }

  open(n: number): void {
    for (let i = 0; i < n; i++) {
      const s = connect({ path: this.socketPath });
      s.pause();
      s.on('error', () => undefined);
      s.write(`GET ${this.path} HTTP/1.1\r\nHost: bench\r\n\r\n`);
      this.socks.push(s);
    }
  }

  close(): void {
    for (const s of this.socks.splice(0)) s.destroy();
  }

  // n of them held open for fn, then closed, and the engine given up to 5 s to let go.
  async hold<T>(n: number, fn: () => Promise<T>): Promise<T> {
    this.open(n);
    try {
      return await fn();
    } finally {
      this.close();
      await waitReleased(this.socketPath, 5000);
    }
  }
}

// Bytes the engine has queued and not yet delivered on each connection to its socket
// (`ss -xn`: Send-Q of the sockets whose local address is the engine's socket path).
async function sendQueues(socketPath: string): Promise<number[]> {
  const r = await run('ss', ['-xn'], { stdout: 'all' });
  if (r.code !== 0) throw new Error(`ss -xn failed: ${r.stderr.trim()}`);
  const out: number[] = [];
  for (const l of r.stdout.split('\n')) {
    const f = l.trim().split(/\s+/);
    if (f[0] === 'u_str' && f[1] === 'ESTAB' && f[4] === socketPath) out.push(Number(f[3]));
  }
  return out;
}

const full = (qs: readonly number[]) => qs.filter((q) => q >= FULL_BYTES).length;

// Until at least n connections to the socket are stuck with full buffers.
async function waitFilled(
  socketPath: string,
  n: number,
  ms: number,
  signal: AbortSignal,
): Promise<number[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const qs = await sendQueues(socketPath);
    if (full(qs) >= n) return qs.filter((q) => q >= FULL_BYTES);
    if (Date.now() > deadline) {
      throw new Error(
        `only ${full(qs)} of ${n} stuck subscribers of ${socketPath} have ${FULL_BYTES} bytes ` +
          `queued after ${ms} ms (Send-Q: ${qs.join(', ')})`,
      );
    }
    await sleep(50, undefined, { signal });
  }
}

// Until no connection to the socket has a full buffer (the engine has let go of them).
async function waitReleased(socketPath: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (full(await sendQueues(socketPath)) === 0) return true;
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
}

const mib = (kib: number) => (kib / 1024).toFixed(1);

// A sample without subscribers must not have any left from the previous one.
async function assertNoneStuck(socketPath: string): Promise<void> {
  const qs = await sendQueues(socketPath);
  if (full(qs) > 0) throw new Error(`${socketPath} still has stuck connections: ${qs.join(', ')}`);
}

// The path to the unix socket an engine's CLI talks to (`-H unix://...` for docker).
function dockerSocket(e: Engine): string {
  const args = e.command([]).args;
  const h = args[args.indexOf('-H') + 1] ?? '';
  if (!h.startsWith('unix://')) throw new Error(`no unix socket in ${args.join(' ')}`);
  return h.slice('unix://'.length);
}

// One engine's side of the comparison: the engine whose `run --rm` is timed, its socket, its
// daemon, and where the daemon's RSS goes in a sample's detail.
interface Side {
  readonly engine: Engine;
  readonly socket: string;
  daemonPid(): number | undefined;
  readonly rssKey: string;
}

export function eventsSubscriber(): Scenario {
  let berth: BenchDaemon | undefined;
  const stuck: StuckSubscribers[] = [];
  const agents: Agent[] = [];
  const notes: string[] = [];
  // Every wall time taken, per row (the scenario does its own warm-up in setup).
  const taken = new Map<string, number[]>();
  const rss = new Map<string, number[]>();
  const dockerFills: number[] = [];
  let dockerUnblocked = 0;
  const record = (row: string, ms: number, rssK: number) => {
    taken.set(row, [...(taken.get(row) ?? []), ms]);
    if (Number.isFinite(rssK)) rss.set(row, [...(rss.get(row) ?? []), rssK]);
  };

  const ratios = (): string[] => {
    const out: string[] = [];
    for (const e of ['berth', 'docker']) {
      const a = summarize(taken.get(`${e} none`) ?? []);
      const b = summarize(taken.get(`${e} stuck`) ?? []);
      if (a.n === 0 || b.n === 0) continue;
      out.push(
        `${e}: ${(b.median / a.median).toFixed(2)}x median, ${(b.p90 / a.p90).toFixed(2)}x p90 ` +
          `(${b.median.toFixed(1)} / ${a.median.toFixed(1)} ms, p90 ${b.p90.toFixed(1)} / ` +
          `${a.p90.toFixed(1)} ms; ${b.n} and ${a.n} samples)`,
      );
    }
    return out.length === 0 ? [] : [`stuck ÷ none: ${out.join('; ')}`];
  };
  const rssRanges = (): string[] => {
    const out = [...rss].map(([row, v]) => `${row} ${mib(Math.min(...v))}-${mib(Math.max(...v))}`);
    return out.length === 0
      ? []
      : [`agent RSS MiB after each run (berthd; dockerd), lowest-highest: ${out.join(', ')}`];
  };

  return {
    name: 'events-subscriber',
    description: `run --rm busybox true with no event subscriber and with ${SUBSCRIBERS} stuck ones`,
    // Warm-up is done in setup (one untimed cycle per row; not with --quick, where the event
    // generation has warmed berthd up), so that every sample the runner takes is also one of
    // the stuck ÷ none ratios in the notes.
    schedule: (quick) => (quick ? { runs: 4, warmup: 0 } : { runs: 12, warmup: 0 }),

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      if (which('ss') === undefined)
        throw new Error('ss (iproute2) is needed to see stuck sockets');
      const events = ctx.quick ? 1500 : 4000;
      const moreEvents = ctx.quick ? 600 : 6000;
      // Quiet time around the RSS readings.
      const quiet = ctx.quick ? 300 : 1000;
      ctx.log('starting berthd');
      const b = await startBerth(BENCH_CGROUP);
      berth = b.d;
      const d = b.d;
      const agent = new Agent({ keepAlive: true, maxSockets: GEN_CONCURRENCY });
      agents.push(agent);

      // create + rm pairs through the API, a few at a time: two events each. After a
      // failure the calls under way finish before it is thrown, so teardown sees them all.
      const generate = async (pairs: number): Promise<number> => {
        const t0 = performance.now();
        await repeatConcurrently(pairs, GEN_CONCURRENCY, async () => {
          ctx.signal.throwIfAborted();
          const body = { image: 'busybox', cmd: ['true'] };
          const r = expectStatus(
            await unixRequest(d.socket, '/v1/containers', { method: 'POST', agent, body }),
            201,
            'create',
          );
          const id = (JSON.parse(r.body) as { Id: string }).Id;
          const path = `/v1/containers/${id}`;
          expectStatus(await unixRequest(d.socket, path, { method: 'DELETE', agent }), 204, 'rm');
        });
        return performance.now() - t0;
      };

      ctx.log(`berth: appending ${events} events (create + rm through the API)`);
      await generate(events / 2);
      const berthStuck = new StuckSubscribers(d.socket, '/v1/events?since=0&follow=1');
      stuck.push(berthStuck);

      // berthd's memory and API pace while many more events come: with no subscriber (the
      // control), then with the stuck ones held throughout.
      const quietly = async () => {
        await sleep(quiet, undefined, { signal: ctx.signal });
        return procRssKiB(d.pid);
      };
      const rss0 = await quietly();
      ctx.log(`berth: appending ${moreEvents} more events with no subscriber`);
      const ctlMs = await generate(moreEvents / 2);
      const rssCtl = await quietly();
      berthStuck.open(SUBSCRIBERS);
      const q1 = await waitFilled(d.socket, SUBSCRIBERS, 10_000, ctx.signal);
      const rss1 = await quietly();
      ctx.log(`berth: appending ${moreEvents} more events with ${SUBSCRIBERS} stuck subscribers`);
      const stuckMs = await generate(moreEvents / 2);
      const rss2 = await quietly();
      const q2 = await waitFilled(d.socket, SUBSCRIBERS, 1000, ctx.signal);
      berthStuck.close();
      if (!(await waitReleased(d.socket, 5000)))
        throw new Error('berthd kept full connections after its subscribers closed');
      const rss3 = await quietly();
      const journal = expectStatus(
        await unixRequest(d.socket, '/v1/events?since=0', { agent }),
        200,
        'events',
      );
      const journalEvents = journal.body.split('\n').filter(Boolean).length;
      const eventBytes = journal.body.length / Math.max(1, journalEvents);
      const rate = (ms: number) => ((moreEvents / 2 / ms) * 1000).toFixed(0);
      const kib = (qs: number[]) => qs.map((q) => (q / 1024).toFixed(0)).join('/');
      notes.push(
        `berth journal: ${journalEvents} events (~${eventBytes.toFixed(0)} bytes a line) ` +
          `before the samples; its stuck subscribers ask for since=0&follow=1, so berthd fills ` +
          `their sockets from the store`,
        `berthd RSS MiB (each ${quiet / 1000} s after the step): ${mib(rss0)} after ${events} ` +
          `events; ${mib(rssCtl)} after ${moreEvents} more with no subscriber; ${mib(rss1)} ` +
          `with ${SUBSCRIBERS} stuck subscribers filled (Send-Q ${kib(q1)} KiB); ${mib(rss2)} ` +
          `after ${moreEvents} more with them stuck (Send-Q ${kib(q2)} KiB); ${mib(rss3)} ` +
          `after they closed`,
        `berth create + rm through the API (${GEN_CONCURRENCY} at a time, ${moreEvents / 2} ` +
          `pairs): ${rate(ctlMs)} pairs/s with no subscriber, ${rate(stuckMs)} pairs/s with ` +
          `${SUBSCRIBERS} stuck`,
      );

      const timedRun = (e: Engine, signal: AbortSignal) => {
        const c = e.command(['run', '--rm', ...e.runFlags, e.image, 'true']);
        return timedOk(c.file, c.args, { env: c.env, signal });
      };

      // A timed run after SETTLE_MS of quiet, and the daemon's RSS right after it.
      const settledRun = async (x: Side, signal: AbortSignal) => {
        await sleep(SETTLE_MS, undefined, { signal });
        const ms = await timedRun(x.engine, signal);
        return { ms, rssK: procRssKiB(x.daemonPid()) };
      };
      // A sample with no subscriber: none may be left stuck from the previous one.
      const unsubscribed =
        (x: Side) =>
        async (signal: AbortSignal): Promise<Measured> => {
          await assertNoneStuck(x.socket);
          const { ms, rssK } = await settledRun(x, signal);
          record(`${x.engine.name} none`, ms, rssK);
          return { values: { ms }, detail: { [x.rssKey]: rssK } };
        };

      const berthSide: Side = {
        engine: b.e,
        socket: d.socket,
        daemonPid: () => d.pid,
        rssKey: 'berthdRssKiB',
      };
      const berthStuckRun = (signal: AbortSignal): Promise<Measured> =>
        berthStuck.hold(SUBSCRIBERS, async () => {
          const before = await waitFilled(d.socket, SUBSCRIBERS, 10_000, signal);
          const { ms, rssK } = await settledRun(berthSide, signal);
          const after = await waitFilled(d.socket, SUBSCRIBERS, 1000, signal);
          record('berth stuck', ms, rssK);
          return {
            values: { ms },
            detail: { berthdRssKiB: rssK, sendQBefore: before, sendQAfter: after },
          };
        });

      const subjects: Subject[] = [
        {
          name: 'berth',
          label: 'berth run --rm --network none busybox true, no subscriber',
          role: 'subject',
          group: 'no subscriber',
          sample: unsubscribed(berthSide),
        },
        {
          name: 'berth',
          label: `the same, ${SUBSCRIBERS} stuck /v1/events followers`,
          role: 'subject',
          group: 'stuck subscribers',
          sample: berthStuckRun,
        },
      ];

      for (const p of ctx.peers) {
        if (p.name !== 'docker') continue;
        const sock = dockerSocket(p);
        const dAgent = new Agent({ keepAlive: true, maxSockets: 1 });
        agents.push(dAgent);
        const dStuck = new StuckSubscribers(sock, '/events');
        stuck.push(dStuck);
        const dockerSide: Side = {
          engine: p,
          socket: sock,
          daemonPid: () => p.agents().find((a) => a.name === 'dockerd')?.pid,
          rssKey: 'dockerdRssKiB',
        };
        let fills = 0;
        // Image tag + untag through the API (two events, no container work) until dockerd
        // has to wait out its publish timeout: every subscriber's queue is then full.
        const fill = async (): Promise<{ events: number; blocked: boolean; ms: number }> => {
          const t0 = performance.now();
          let n = 0;
          for (;;) {
            ctx.signal.throwIfAborted();
            const tag = `f${process.pid}-${fills++}`;
            const a = expectStatus(
              await unixRequest(sock, `/images/${p.image}/tag?repo=berthbench/fill&tag=${tag}`, {
                method: 'POST',
                agent: dAgent,
              }),
              201,
              'docker tag',
            );
            const u = expectStatus(
              await unixRequest(sock, `/images/berthbench/fill:${tag}`, {
                method: 'DELETE',
                agent: dAgent,
              }),
              200,
              'docker untag',
            );
            n += 2;
            const blocked = Math.max(a.ms, u.ms) >= DOCKER_SLOW_MS;
            if (blocked || n >= DOCKER_FILL_MAX) {
              return { events: n, blocked, ms: performance.now() - t0 };
            }
          }
        };
        subjects.push(
          {
            name: 'docker',
            label: `docker run --rm --network none ${p.image} true, no subscriber`,
            role: 'peer',
            group: 'no subscriber',
            sample: unsubscribed(dockerSide),
          },
          {
            name: 'docker',
            label: `the same, ${SUBSCRIBERS} stuck /events readers`,
            role: 'peer',
            group: 'stuck subscribers',
            maxRuns: DOCKER_STUCK_RUNS,
            sample: (signal) =>
              dStuck.hold(SUBSCRIBERS, async () => {
                await sleep(100, undefined, { signal });
                const f = await fill();
                const before = await waitFilled(sock, SUBSCRIBERS, 5000, signal);
                dockerFills.push(f.events);
                if (!f.blocked) dockerUnblocked++;
                const { ms, rssK } = await settledRun(dockerSide, signal);
                record('docker stuck', ms, rssK);
                return {
                  values: { ms },
                  detail: { dockerdRssKiB: rssK, fill: f, sendQBefore: before },
                };
              }),
          },
        );
      }
      if (ctx.peers.some((p) => p.name === 'podman')) {
        notes.push(
          'podman left out: it has no daemon; its events are a file (here) or the journal, ' +
            'which each `podman events` reads on its own, so no subscriber can hold it up',
        );
      }

      await warmUpEachRow(subjects, ctx);
      taken.clear();
      rss.clear();
      dockerFills.splice(0);
      dockerUnblocked = 0;
      return subjects;
    },

    async teardown(ctx: BenchContext): Promise<string[]> {
      for (const s of stuck.splice(0)) s.close();
      for (const a of agents.splice(0)) a.destroy();
      const docker = ctx.peers.filter((p) => p.name === 'docker');
      const left = await removePeerContainers(docker, { expected: true, recheck: true });
      left.push(...(await stopBerth(berth, { rmTimeoutMs: 120_000, settleMs: 10_000 })));
      berth = undefined;
      left.push(...sweepBenchCgroups());
      return left;
    },

    notes: () => {
      const docker =
        dockerFills.length === 0
          ? []
          : [
              `docker's stuck subscribers ask for /events (live only: dockerd replays at most ` +
                `its last 256 events); before each sample they are filled with image tag + ` +
                `untag calls until one took >= ${DOCKER_SLOW_MS} ms (dockerd waiting out its ` +
                `100 ms publish timeout): ${summarize(dockerFills).median.toFixed(0)} events ` +
                `(median)` +
                (dockerUnblocked > 0
                  ? `; ${dockerUnblocked} fill(s) reached ${DOCKER_FILL_MAX} events without a slow call`
                  : ''),
            ];
      return [
        `stuck subscriber: a connection to the engine's socket that sends one GET of the ` +
          `event stream and never reads; ${SUBSCRIBERS} of them are opened before each stuck ` +
          `sample, and every one has >= ${FULL_BYTES / 1000} kB unread on the engine's side ` +
          `(ss Send-Q) before the clock starts, and closed after it`,
        ...notes,
        ...docker,
        ...ratios(),
        ...rssRanges(),
      ];
    },
  };
}
