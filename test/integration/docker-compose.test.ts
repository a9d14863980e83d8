// docker-compose 1.29 (Debian's, on the Python docker SDK) against berthd's Docker socket:
// `up -d` (pulling the image from a loopback registry), `ps`, `logs`, a second `up -d` that
// finds everything up to date, `down -v --rmi all`, for a service with a published port,
// environment, a named volume, a restart policy and labels.
// Compose finds what it made by its com.docker.compose.* labels, and decides whether a
// container is current by its config-hash label: they must come back exactly as sent, on
// the container, the network and the volume.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { get } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestDaemon, runCommand, type RunResult } from '../helpers/daemon.ts';
import {
  dockerRequest,
  dockerSocketOf,
  removeDockerLeftovers,
  seedRegistry,
} from '../helpers/docker-fixtures.ts';
import { freePort, TestRegistry, type OciLayoutBuilder } from '../helpers/registry.ts';

const COMPOSE = '/usr/bin/docker-compose';
const PROJECT = 'bcompose';

function httpGet(port: number, path: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (b: Buffer) => (body += b.toString()));
      res.on('end', () => resolve(res.statusCode === 200 ? body : undefined));
    });
    req.on('error', () => resolve(undefined));
    req.on('timeout', () => req.destroy());
  });
}

interface ContainerSummary {
  Id: string;
  Names: string[];
  Labels: Record<string, string>;
  State: string;
}

describe('docker-compose 1.29', () => {
  let d: TestDaemon;
  let reg: TestRegistry;
  let layout: OciLayoutBuilder;
  let image: string;
  let dir: string;
  let sock: string;
  let port: number;
  const compose = (args: readonly string[]): Promise<RunResult> =>
    runCommand(COMPOSE, ['-p', PROJECT, '--no-ansi', ...args], {
      timeoutMs: 120_000,
      env: {
        PATH: '/usr/bin:/bin',
        HOME: dir,
        DOCKER_HOST: `unix://${sock}`,
        DOCKER_CONFIG: join(dir, '.docker'),
        COMPOSE_FILE: join(dir, 'docker-compose.yml'),
      },
    });
  const ok = async (args: readonly string[]) => {
    const r = await compose(args);
    assert.equal(r.code, 0, `docker-compose ${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r;
  };
  const api = async (path: string) => {
    const r = await dockerRequest(sock, 'GET', path);
    assert.equal(r.status, 200, `${path}: ${r.body}`);
    return r.json;
  };
  const byProject = encodeURIComponent(
    JSON.stringify({ label: [`com.docker.compose.project=${PROJECT}`] }),
  );

  before(async () => {
    dir = await mkdtemp('/tmp/bt-compose-');
    port = await freePort();
    reg = await TestRegistry.start();
    ({ layout } = await seedRegistry(reg, [{ repo: 'compose/web', tag: 'v1' }]));
    image = `${reg.host}/compose/web:v1`;
    d = await TestDaemon.start();
    sock = dockerSocketOf(d);
    await writeFile(
      join(dir, 'docker-compose.yml'),
      [
        'version: "3.7"',
        'services:',
        '  web:',
        `    image: ${image}`,
        '    command:',
        '      - sh',
        '      - -c',
        '      - echo "started $$GREETING"; echo hello-from-volume > /data/index.html; exec busybox httpd -f -p 8080 -h /data',
        '    environment:',
        '      GREETING: compose',
        '    ports:',
        `      - "127.0.0.1:${port}:8080"`,
        '    volumes:',
        '      - data:/data',
        '    restart: unless-stopped',
        '    labels:',
        '      org.example.role: web',
        'volumes:',
        '  data:',
        '    labels:',
        '      org.example.kept: "yes"',
        'networks:',
        '  default:',
        '    labels:',
        '      org.example.net: front',
        '',
      ].join('\n'),
    );
  });
  after(async () => {
    await compose(['down', '-v', '--timeout', '1']).catch(() => undefined);
    await removeDockerLeftovers(d);
    await d.destroy();
    await reg.stop();
    await layout.remove();
    await rm(dir, { recursive: true, force: true });
  });

  it('up -d pulls the image, makes the network, the volume and the container; the service answers', async () => {
    const up = await ok(['up', '-d']);
    const said = up.stderr + up.stdout;
    assert.match(said, new RegExp(`Pulling web \\(${image.replace(/\./g, '\\.')}\\)`));
    assert.match(said, new RegExp(`Creating network "${PROJECT}_default"`));
    assert.match(said, new RegExp(`Creating volume "${PROJECT}_data"`));
    assert.match(said, new RegExp(`Creating ${PROJECT}_web_1`));
    let body: string | undefined;
    for (let i = 0; i < 100 && body === undefined; i++) {
      body = await httpGet(port, '/index.html');
      if (body === undefined) await sleep(100);
    }
    assert.equal(body, 'hello-from-volume\n');
  });

  it('ps and logs', async () => {
    const ps = await ok(['ps']);
    assert.match(ps.stdout, new RegExp(`${PROJECT}_web_1\\s.*\\bUp\\b`));
    assert.match(ps.stdout, new RegExp(`127\\.0\\.0\\.1:${port}->8080/tcp`));
    const logs = await ok(['logs', '--no-color', 'web']);
    assert.match(logs.stdout, /started compose/);
  });

  it('labels round-trip exactly on the container, the network and the volume', async () => {
    const list = (await api(
      `/v1.41/containers/json?all=1&filters=${byProject}`,
    )) as ContainerSummary[];
    assert.equal(list.length, 1);
    const c = list[0] as ContainerSummary;
    const labels = c.Labels;
    assert.equal(labels['com.docker.compose.project'], PROJECT);
    assert.equal(labels['com.docker.compose.service'], 'web');
    assert.equal(labels['com.docker.compose.oneoff'], 'False');
    assert.equal(labels['com.docker.compose.container-number'], '1');
    assert.equal(labels['com.docker.compose.version'], '1.29.2');
    assert.equal(labels['com.docker.compose.project.working_dir'], dir);
    assert.equal(
      labels['com.docker.compose.project.config_files'],
      join(dir, 'docker-compose.yml'),
    );
    assert.match(labels['com.docker.compose.config-hash'] ?? '', /^[0-9a-f]{64}$/);
    assert.equal(labels['org.example.role'], 'web');
    const inspect = (await api(`/v1.41/containers/${c.Id}/json`)) as {
      Config: { Labels: Record<string, string>; Env: string[] };
      HostConfig: { RestartPolicy: { Name: string } };
    };
    assert.deepEqual(inspect.Config.Labels, labels);
    assert.ok(inspect.Config.Env.includes('GREETING=compose'), inspect.Config.Env.join());
    assert.equal(inspect.HostConfig.RestartPolicy.Name, 'unless-stopped');

    const net = (await api(`/v1.41/networks/${PROJECT}_default`)) as {
      Labels: Record<string, string>;
      Containers: Record<string, unknown>;
    };
    assert.deepEqual(net.Labels, {
      'com.docker.compose.network': 'default',
      'com.docker.compose.project': PROJECT,
      'com.docker.compose.version': '1.29.2',
      'org.example.net': 'front',
    });
    assert.deepEqual(Object.keys(net.Containers), [c.Id]);
    const vol = (await api(`/v1.41/volumes/${PROJECT}_data`)) as { Labels: Record<string, string> };
    assert.deepEqual(vol.Labels, {
      'com.docker.compose.project': PROJECT,
      'com.docker.compose.version': '1.29.2',
      'com.docker.compose.volume': 'data',
      'org.example.kept': 'yes',
    });
  });

  it('a second up -d finds everything up to date', async () => {
    const before = (await api(`/v1.41/containers/json?filters=${byProject}`)) as ContainerSummary[];
    const up = await ok(['up', '-d']);
    assert.match(up.stderr + up.stdout, new RegExp(`${PROJECT}_web_1 is up-to-date`));
    const after = (await api(`/v1.41/containers/json?filters=${byProject}`)) as ContainerSummary[];
    assert.deepEqual(
      after.map((c) => c.Id),
      before.map((c) => c.Id),
      'the same container, not a new one',
    );
  });

  it('down -v --rmi all removes the container, the network, the volume and the image', async () => {
    const down = await ok(['down', '-v', '--rmi', 'all', '--timeout', '2']);
    assert.match(down.stderr + down.stdout, new RegExp(`Removing network ${PROJECT}_default`));
    const list = (await api(`/v1.41/containers/json?all=1&filters=${byProject}`)) as unknown[];
    assert.deepEqual(list, []);
    assert.equal(
      (await dockerRequest(sock, 'GET', `/v1.41/networks/${PROJECT}_default`)).status,
      404,
    );
    assert.equal((await dockerRequest(sock, 'GET', `/v1.41/volumes/${PROJECT}_data`)).status, 404);
    assert.equal((await dockerRequest(sock, 'GET', `/v1.41/images/${image}/json`)).status, 404);
    const ps = await ok(['ps', '-q']);
    assert.equal(ps.stdout.trim(), '');
  });
});
