// Container metrics from one sampler: every running container's cgroup is read in one
// batched pass each interval, and every reader (stats --no-stream, the stats stream,
// /metrics) answers from the last two samples. Nobody samples twice and waits a second,
// as docker's non-streaming stats does.
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import type { Cgroups, CgroupStats } from '../cgroups/index.ts';
import type { Store } from '../store/index.ts';
import type { ContainerRecord } from '../types/domain.ts';
import type { Logger } from '../util/logger.ts';
import { errorMessage } from '../util/errors.ts';
import type { ContainerEngine } from './containers.ts';
import type { EventBus } from './events.ts';

export interface ContainerStats {
  readonly id: string;
  readonly name: string;
  readonly image: string;
  readonly read: string;
  readonly cpuPercent: number;
  readonly cpuSeconds: number;
  readonly memoryUsage: number;
  readonly memoryLimit: number;
  readonly memoryPercent: number;
  readonly memoryRss: number;
  readonly memoryCache: number;
  readonly memoryFailcnt: number;
  readonly pids: number;
  readonly pidsLimit: number | null;
  readonly netRxBytes: number;
  readonly netTxBytes: number;
  readonly blkReadBytes: number;
  readonly blkWriteBytes: number;
  readonly oomKills: number;
  readonly restarts: number;
  readonly logBytes: number;
  readonly logDroppedBytes: number;
  readonly monitorRssBytes: number;
}

interface Sample {
  readonly atNs: bigint;
  readonly cg: CgroupStats;
  readonly net: { rx: number; tx: number };
  readonly log: { bytes: number; dropped: number };
  readonly monitorRss: number;
}

const PAGE = 4096;
// A container above this share of its memory limit for this long gets a warning event.
const HIGH_SHARE = 0.9;
const HIGH_SAMPLES = 3;

function netDev(pid: number): { rx: number; tx: number } {
  let rx = 0;
  let tx = 0;
  try {
    for (const line of readFileSync(`/proc/${pid}/net/dev`, 'utf8').split('\n').slice(2)) {
      const [iface, rest] = line.split(':');
      if (!rest || iface?.trim() === 'lo') continue;
      const f = rest.trim().split(/\s+/);
      rx += Number(f[0]) || 0;
      tx += Number(f[8]) || 0;
    }
  } catch {
    /* exited */
  }
  return { rx, tx };
}

function rssOf(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * PAGE;
  } catch {
    return 0;
  }
}

export class StatsService {
  private readonly cgroups: Cgroups;
  private readonly containers: ContainerEngine;
  private readonly store: Store;
  private readonly events: EventBus;
  private readonly log: Logger;
  private readonly intervalMs: number;
  // Recent samples per container, oldest first: CPU % is taken over about a second even
  // when the sampler runs faster, so CFS quota periods do not make it jump.
  private readonly samples = new Map<string, { history: Sample[]; last: Sample }>();
  private readonly high = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private lastRead = 0;
  private sampling: Promise<void> | undefined;
  private readonly listeners = new Set<() => void>();

  constructor(
    cgroups: Cgroups,
    containers: ContainerEngine,
    store: Store,
    events: EventBus,
    log: Logger,
    intervalMs = 1000,
  ) {
    this.cgroups = cgroups;
    this.containers = containers;
    this.store = store;
    this.events = events;
    this.log = log;
    this.intervalMs = intervalMs;
  }

  start(): void {
    const tick = () => {
      this.sampling = this.sample()
        .catch((e: unknown) => this.log.warn({ err: errorMessage(e) }, 'stats sampling failed'))
        .finally(() => {
          // Every interval while someone reads stats or metrics; five times slower when
          // nobody has for a while (then the sampler only watches memory).
          const busy = Date.now() - this.lastRead < 30_000;
          this.timer = setTimeout(tick, busy ? this.intervalMs : this.intervalMs * 5);
          this.timer.unref();
        });
    };
    tick();
  }

  // Readers say so, and the sampler keeps its full pace for them.
  touch(): void {
    this.lastRead = Date.now();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  // Resolves after the next sample: a stream waits on this instead of a timer of its own.
  nextSample(): Promise<void> {
    return new Promise((r) => {
      const done = () => {
        this.listeners.delete(done);
        r();
      };
      this.listeners.add(done);
    });
  }

  private async sample(): Promise<void> {
    const running = this.containers.list().filter((c) => c.state === 'running');
    const paths = running.map((c) => this.containers.cgroupsPathOf(c.id));
    const read = this.cgroups.readStatsMany(paths);
    const atNs = process.hrtime.bigint();
    const seen = new Set<string>();
    await Promise.all(
      running.map(async (c, i) => {
        const cg = read.get(paths[i] as string);
        if (!cg) return;
        seen.add(c.id);
        const mon = await this.containers.monitorStats(c.id);
        const s: Sample = {
          atNs,
          cg,
          net: c.config.networkMode === 'host' ? { rx: 0, tx: 0 } : netDev(c.pid),
          log: { bytes: mon?.['logBytes'] ?? 0, dropped: mon?.['logDroppedBytes'] ?? 0 },
          monitorRss: rssOf(c.monitorPid),
        };
        const old = this.samples.get(c.id);
        const history = old
          ? [...old.history, old.last].filter((x) => Number(s.atNs - x.atNs) <= 3e9).slice(-10)
          : [];
        this.samples.set(c.id, { history, last: s });
        this.watchMemory(c, cg, old?.last.cg);
      }),
    );
    for (const id of this.samples.keys()) if (!seen.has(id)) this.samples.delete(id);
    for (const l of [...this.listeners]) l();
  }

  // A warning before the OOM killer acts: memory held above 90% of the limit for three
  // samples in a row, once per episode; on cgroup v2 the kernel's own 'high' events too.
  private watchMemory(c: ContainerRecord, cg: CgroupStats, prev: CgroupStats | undefined): void {
    // cgroup v2 says itself when a group went over memory.high (throttled, not killed).
    if (prev && cg.memoryHighEvents > prev.memoryHighEvents) {
      this.store.tx(() =>
        this.events.append({
          type: 'container',
          action: 'memory-high',
          actorId: c.id,
          attributes: {
            name: c.name,
            image: c.config.image,
            reason: 'memory.high',
            events: String(cg.memoryHighEvents),
          },
        }),
      );
    }
    const limit = cg.memoryLimit;
    const above = limit !== null && cg.memoryUsage > HIGH_SHARE * limit;
    const n = above ? (this.high.get(c.id) ?? 0) + 1 : 0;
    this.high.set(c.id, n);
    if (n === HIGH_SAMPLES) {
      this.store.tx(() =>
        this.events.append({
          type: 'container',
          action: 'memory-high',
          actorId: c.id,
          attributes: {
            name: c.name,
            image: c.config.image,
            reason: 'above 90% of the limit',
            usage: String(cg.memoryUsage),
            limit: String(limit),
          },
        }),
      );
    }
  }

  // The latest view of one container (or undefined before its first sample).
  get(c: ContainerRecord): ContainerStats | undefined {
    this.touch();
    const s = this.samples.get(c.id);
    if (!s) return undefined;
    const { last, history } = s;
    const prev =
      [...history].reverse().find((x) => Number(last.atNs - x.atNs) >= 1e9) ?? history[0];
    const cg = last.cg;
    let cpuPercent: number;
    if (prev) {
      const dt = Number(last.atNs - prev.atNs);
      cpuPercent = dt > 0 ? ((cg.cpuUsageNs - prev.cg.cpuUsageNs) / dt) * 100 : 0;
    } else {
      const since = Date.now() - Date.parse(c.startedAt);
      cpuPercent = since > 0 ? (cg.cpuUsageNs / 1e6 / since) * 100 : 0;
    }
    const limit = cg.memoryLimit ?? totalmem();
    return {
      id: c.id,
      name: c.name,
      image: c.config.image,
      read: new Date().toISOString(),
      cpuPercent: Math.max(0, cpuPercent),
      cpuSeconds: cg.cpuUsageNs / 1e9,
      memoryUsage: cg.memoryUsage,
      memoryLimit: limit,
      memoryPercent: limit > 0 ? (cg.memoryUsage / limit) * 100 : 0,
      memoryRss: cg.memoryRss,
      memoryCache: cg.memoryCache,
      memoryFailcnt: cg.memoryFailcnt,
      pids: cg.pidsCurrent,
      pidsLimit: cg.pidsLimit,
      netRxBytes: last.net.rx,
      netTxBytes: last.net.tx,
      blkReadBytes: cg.blkioReadBytes,
      blkWriteBytes: cg.blkioWriteBytes,
      oomKills: Math.max(cg.oomKills, c.oomKills),
      restarts: c.restartCount,
      logBytes: last.log.bytes,
      // The monitor counts this run; the store, periods that ended (this run and before).
      logDroppedBytes: Math.max(c.logDroppedBytes, last.log.dropped),
      monitorRssBytes: last.monitorRss,
    };
  }

  // Every running container's latest view, for /metrics and `stats` without names.
  all(): ContainerStats[] {
    const out: ContainerStats[] = [];
    for (const c of this.containers.list()) {
      if (c.state !== 'running') continue;
      const s = this.get(c);
      if (s) out.push(s);
    }
    return out;
  }

  // Waits for the first sample of a container that just started (bounded).
  async ensure(c: ContainerRecord): Promise<ContainerStats | undefined> {
    for (let i = 0; i < 3 && !this.samples.has(c.id) && c.state === 'running'; i++)
      await this.nextSample();
    return this.get(c);
  }

  settled(): Promise<void> | undefined {
    return this.sampling;
  }
}
