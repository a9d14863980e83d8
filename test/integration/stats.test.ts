// Metrics against the cgroup files they come from, the Prometheus format checked by
// promtool, and a real Prometheus server scraping berthd on loopback.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand, TestDaemon, waitFor } from '../helpers/daemon.ts';

interface StatsView {
  berth: {
    id: string;
    cpuPercent: number;
    cpuSeconds: number;
    memoryUsage: number;
    memoryLimit: number;
    pids: number;
    pidsLimit: number | null;
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

const cg = (controller: string, id: string, file: string) =>
  readFileSync(`/sys/fs/cgroup/${controller}/berth/${id}/${file}`, 'utf8').trim();

describe('stats and metrics', () => {
  let d: TestDaemon;
  let metricsPort = 0;
  before(async () => {
    metricsPort = await freePort();
    // A fast sampler, so the memory warning's three samples come quickly.
    d = await TestDaemon.start([
      '--metrics-addr',
      `127.0.0.1:${metricsPort}`,
      '--stats-interval',
      '300ms',
    ]);
  });
  after(async () => {
    await d.destroy();
  });

  it('stats match the cgroup files, and --no-stream answers at once from the last sample', async () => {
    const id = await d.runDetached([
      '--name',
      'busy',
      '-m',
      '64m',
      '--cpus',
      '0.5',
      '--pids-limit',
      '99',
      'busybox',
      'sh',
      '-c',
      'while :; do :; done',
    ]);
    // The sampler slows down while nobody reads stats; a first read brings it back to pace.
    await d.berthOk(['stats', '--no-stream']);
    await sleep(2500);
    const s = JSON.parse(
      (await d.berthOk(['stats', '--no-stream', '--format', 'json', 'busy'])).trim(),
    ) as { ID: string; PIDs: string; CPUPerc: string };
    assert.equal(s.ID, id.slice(0, 12));
    assert.equal(s.PIDs, cg('pids', id, 'pids.current'));
    const cpu = Number(s.CPUPerc.replace('%', ''));
    assert.ok(cpu > 30 && cpu < 70, `cpu ${cpu}% at --cpus 0.5`);
    const v = (await d.client.call<StatsView>('GET', `/v1/containers/${id}/stats`)).data.berth;
    assert.equal(v.memoryLimit, Number(cg('memory', id, 'memory.limit_in_bytes')));
    assert.equal(v.pidsLimit, 99);
    const usage = Number(cg('cpuacct', id, 'cpuacct.usage')) / 1e9;
    assert.ok(
      v.cpuSeconds <= usage && v.cpuSeconds > usage - 1.5,
      `sampled ${v.cpuSeconds} s vs ${usage} s now`,
    );
    const mem = Number(cg('memory', id, 'memory.usage_in_bytes'));
    assert.ok(Math.abs(v.memoryUsage - mem) < 4 * 1024 * 1024, `memory ${v.memoryUsage} vs ${mem}`);
    const all = (await d.client.call<StatsView[]>('GET', '/v1/stats')).data;
    assert.deepEqual(
      all.map((x) => x.berth.id),
      [id],
    );
    await d.berthOk(['rm', '-f', id]);
  });

  it('serves /metrics that promtool accepts, on the socket and on --metrics-addr', async () => {
    const id = await d.runDetached(['--name', 'm1', '-l', 'app=x', 'busybox', 'sleep', '300']);
    await sleep(1500);
    const viaSocket = (await d.client.call<string>('GET', '/metrics')).data;
    const viaTcp = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    for (const text of [viaSocket, viaTcp]) {
      assert.match(
        text,
        new RegExp(
          `berth_container_memory_usage_bytes\\{id="${id}",name="m1",image="busybox"\\} \\d+`,
        ),
      );
      assert.match(text, /berth_monitor_memory_rss_bytes\{[^}]*\} [1-9]\d*/);
      const r = await runCommand('promtool', ['check', 'metrics'], { input: text });
      assert.equal(r.code, 0, r.stdout + r.stderr);
    }
    await d.berthOk(['rm', '-f', id]);
  });

  it('a Prometheus server on loopback scrapes berthd', async () => {
    const id = await d.runDetached(['--name', 'scraped', 'busybox', 'sleep', '300']);
    const dir = await mkdtemp('/tmp/bt-prom-');
    const port = await freePort();
    await writeFile(
      join(dir, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: berth\n    static_configs:\n      - targets: ['127.0.0.1:${metricsPort}']\n`,
    );
    let prom: ChildProcess | undefined;
    try {
      prom = spawn(
        'prometheus',
        [
          `--config.file=${join(dir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
        ],
        {
          stdio: 'ignore',
        },
      );
      const q = `http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent('berth_container_memory_usage_bytes{name="scraped"}')}`;
      await waitFor(
        async () => {
          try {
            const j = (await (await fetch(q)).json()) as {
              data?: { result?: { metric: { id: string } }[] };
            };
            return j.data?.result?.[0]?.metric.id === id;
          } catch {
            return false;
          }
        },
        30_000,
        'prometheus to scrape berthd',
      );
    } finally {
      if (prom && prom.exitCode === null) {
        const gone = new Promise((r) => prom?.once('exit', r));
        prom.kill('SIGTERM');
        await gone;
      }
      await rm(dir, { recursive: true, force: true });
      await d.berthOk(['rm', '-f', id]);
    }
  });

  it('warns before the OOM killer: memory held above 90% of the limit is an event', async () => {
    const id = await d.runDetached([
      '-m',
      '20m',
      'busybox',
      'sh',
      '-c',
      'head -c 18m /dev/zero > /dev/shm/fill; sleep 300',
    ]);
    await waitFor(
      async () =>
        (await d.berthOk(['events', '--format', '{{.action}} {{.actorId}}'])).includes(
          `memory-high ${id}`,
        ),
      15_000,
      'a memory-high event',
    );
    await d.berthOk(['rm', '-f', id]);
  });
});
