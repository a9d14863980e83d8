// Stats over the API (one container, all containers, or a stream) and the Prometheus
// endpoint. Everything answers from the sampler's last pass: a scrape or a --no-stream
// call never reads a cgroup itself.
import { createServer, type Server } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { Counter, Gauge, Registry } from 'prom-client';
import type { ContainerEngine, ContainerStats, StatsService } from '../engine/index.ts';
import { invalid } from '../util/errors.ts';
import { truthy } from './query.ts';

type Labels = 'id' | 'name' | 'image';

export function metricsRegistry(stats: StatsService): Registry {
  const registry = new Registry();
  const labelNames: Labels[] = ['id', 'name', 'image'];
  const labels = (s: ContainerStats) => ({ id: s.id, name: s.name, image: s.image });
  // Values are taken at scrape time from the last sample; each metric refills itself.
  const gauge = (name: string, help: string, value: (s: ContainerStats) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const s of stats.all()) {
          const v = value(s);
          if (v !== null) this.set(labels(s), v);
        }
      },
    });
  const counter = (name: string, help: string, value: (s: ContainerStats) => number) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const s of stats.all()) this.inc(labels(s), value(s));
      },
    });
  counter(
    'berth_container_cpu_seconds_total',
    'CPU time used by the container',
    (s) => s.cpuSeconds,
  );
  gauge(
    'berth_container_memory_usage_bytes',
    'Memory in use, page cache included',
    (s) => s.memoryUsage,
  );
  gauge('berth_container_memory_rss_bytes', 'Anonymous memory in use', (s) => s.memoryRss);
  gauge(
    'berth_container_memory_cache_bytes',
    'Page cache charged to the container',
    (s) => s.memoryCache,
  );
  gauge(
    'berth_container_memory_limit_bytes',
    'Memory limit (the host total when unlimited)',
    (s) => s.memoryLimit,
  );
  counter(
    'berth_container_memory_failcnt_total',
    'Times the memory limit was hit',
    (s) => s.memoryFailcnt,
  );
  gauge('berth_container_pids', 'Processes and threads in the container', (s) => s.pids);
  gauge('berth_container_pids_limit', 'Process limit', (s) => s.pidsLimit);
  counter(
    'berth_container_network_receive_bytes_total',
    'Bytes received (loopback excluded)',
    (s) => s.netRxBytes,
  );
  counter(
    'berth_container_network_transmit_bytes_total',
    'Bytes sent (loopback excluded)',
    (s) => s.netTxBytes,
  );
  counter(
    'berth_container_blkio_read_bytes_total',
    'Bytes read from block devices',
    (s) => s.blkReadBytes,
  );
  counter(
    'berth_container_blkio_write_bytes_total',
    'Bytes written to block devices',
    (s) => s.blkWriteBytes,
  );
  counter(
    'berth_container_oom_kills_total',
    'Processes of the container killed by the OOM killer',
    (s) => s.oomKills,
  );
  counter('berth_container_restarts_total', 'Restarts of the container', (s) => s.restarts);
  counter(
    'berth_container_log_written_bytes_total',
    'Log bytes the monitor wrote in this run',
    (s) => s.logBytes,
  );
  counter(
    'berth_container_log_dropped_bytes_total',
    'Output bytes the monitor could not log',
    (s) => s.logDroppedBytes,
  );
  gauge(
    'berth_monitor_memory_rss_bytes',
    "Resident memory of the container's berth-monitor",
    (s) => s.monitorRssBytes,
  );
  return registry;
}

// docker's stats shape, as much as berth knows of it, plus berth's own fields.
function dockerView(s: ContainerStats): Record<string, unknown> {
  return {
    id: s.id,
    name: `/${s.name}`,
    read: s.read,
    cpu_percent: s.cpuPercent,
    memory_stats: {
      usage: s.memoryUsage,
      limit: s.memoryLimit,
      failcnt: s.memoryFailcnt,
      stats: { rss: s.memoryRss, cache: s.memoryCache },
    },
    pids_stats: { current: s.pids, limit: s.pidsLimit },
    networks: { total: { rx_bytes: s.netRxBytes, tx_bytes: s.netTxBytes } },
    blkio: { read_bytes: s.blkReadBytes, write_bytes: s.blkWriteBytes },
    berth: s,
  };
}

export function registerMetricsRoutes(
  app: FastifyInstance,
  containers: ContainerEngine,
  stats: StatsService,
  registry: Registry,
): void {
  app.get('/metrics', async (_req, reply) => {
    const text = await registry.metrics();
    return reply.type(registry.contentType).send(text);
  });

  app.get('/v1/stats', async () => (await settled(stats)).all().map(dockerView));

  app.get(
    '/v1/containers/:id/stats',
    {
      schema: {
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) }),
        querystring: Type.Object({ stream: Type.Optional(Type.String({ maxLength: 5 })) }),
      },
    },
    async (req: FastifyRequest, reply) => {
      const c = containers.resolve((req.params as { id: string }).id);
      const stream = truthy((req.query as { stream?: string }).stream);
      if (!stream) {
        const s = c.state === 'running' ? await stats.ensure(c) : undefined;
        if (!s) throw invalid('container', `${c.name} is not running`);
        return dockerView(s);
      }
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
      res.flushHeaders();
      let open = true;
      res.on('close', () => (open = false));
      while (open) {
        const cur = containers.list().find((x) => x.id === c.id);
        if (!cur || cur.state !== 'running') break;
        const s = stats.get(cur);
        if (s && !res.write(JSON.stringify(dockerView(s)) + '\n'))
          await new Promise((r) => res.once('drain', r));
        await stats.nextSample();
      }
      res.end();
    },
  );
}

async function settled(stats: StatsService): Promise<StatsService> {
  await stats.settled();
  return stats;
}

// `--metrics-addr HOST:PORT`: /metrics alone on TCP, for a Prometheus server to scrape.
export function startMetricsListener(addr: string, registry: Registry): Promise<Server> {
  const m = /^(.*):(\d+)$/.exec(addr);
  if (!m) throw invalid('metrics-addr', `"${addr}" is not HOST:PORT`);
  const host = (m[1] ?? '').replace(/^\[|\]$/g, '');
  const port = Number(m[2]);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
