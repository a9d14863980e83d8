// The Docker surface's pure translations, checked alone: a create body into berth's
// request (Docker's defaults, what is refused), events into Docker's messages and their
// filters, and the API version gate.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromDockerCreate } from '../../src/api/docker/create.ts';
import { dockerEventFilter, dockerEventLine, toDockerEvent } from '../../src/api/docker/events.ts';
import { timeArgNano as timeNano } from '../../src/api/events.ts';
import { dockerBool } from '../../src/api/docker/streams.ts';
import { checkApiVersion, stripVersion } from '../../src/api/docker/version.ts';
import type { EventRecord } from '../../src/types/domain.ts';
import { BerthError } from '../../src/util/errors.ts';

let n = 0;
const anon = () => `${String(++n).padStart(64, 'a')}`;
const create = (body: unknown, name?: string) => fromDockerCreate(body, name, anon);
const refused = (body: unknown, msg: RegExp) =>
  assert.throws(
    () => create(body),
    (e: unknown) => e instanceof BerthError && e.code === 'INVALID_ARGUMENT' && msg.test(e.message),
  );

describe('docker create body', () => {
  it('maps what the docker CLI sends for a typical run', () => {
    const { req, anonymousVolumes } = create(
      {
        Image: 'busybox',
        Cmd: ['sh', '-c', 'echo hi'],
        Entrypoint: null,
        Env: ['A=b'],
        Labels: { tier: 'web' },
        Tty: true,
        OpenStdin: true,
        ExposedPorts: { '80/tcp': {}, '53/udp': {} },
        Healthcheck: { Test: ['CMD-SHELL', 'true'], Interval: 1e9, Retries: 2 },
        StopTimeout: 3,
        Volumes: { '/data': {}, '/bound': {} },
        HostConfig: {
          Binds: ['/srv:/bound:ro,z', 'named:/n'],
          Tmpfs: { '/run/x': 'size=1m,mode=1777,noexec' },
          PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '8080' }] },
          PublishAllPorts: true,
          RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 2 },
          Memory: 64 * 1024 * 1024,
          NanoCpus: 500_000_000,
          PidsLimit: 0,
          AutoRemove: false,
          LogConfig: { Type: 'json-file', Config: { 'max-size': '1m' } },
          CapAdd: null,
          IpcMode: '',
          MemorySwappiness: null,
          ConsoleSize: [24, 80],
        },
      },
      'web',
    );
    assert.equal(req.name, 'web');
    assert.deepEqual(req.cmd, ['sh', '-c', 'echo hi']);
    assert.equal(req.entrypoint, undefined);
    assert.equal(req.readWrite, true, "Docker's writable root by default");
    assert.equal(req.networkMode, 'bridge');
    assert.deepEqual(req.healthcheck, {
      test: ['CMD-SHELL', 'true'],
      intervalMs: 1000,
      retries: 2,
    });
    assert.deepEqual(req.resources, { memory: 64 * 1024 * 1024, cpus: 0.5 });
    assert.deepEqual(req.restartPolicy, { name: 'on-failure', maximumRetryCount: 2 });
    assert.deepEqual(req.logOpts, { 'max-size': '1m' });
    assert.deepEqual(req.consoleSize, [24, 80]);
    assert.deepEqual(req.ports, [
      { containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1', hostPort: 8080 },
      { containerPort: 53, protocol: 'udp', hostIP: '' },
    ]);
    assert.equal(req.publishAll, true);
    assert.deepEqual(req.mounts, [
      { type: 'bind', source: '/srv', target: '/bound', createHostPath: true, readOnly: true },
      { type: 'volume', source: 'named', target: '/n', createHostPath: true },
      {
        type: 'tmpfs',
        target: '/run/x',
        sizeBytes: 1024 * 1024,
        mode: '1777',
        options: ['noexec'],
      },
      { type: 'volume', source: anonymousVolumes[0], target: '/data' },
    ]);
    assert.equal(anonymousVolumes.length, 1, '/bound is a bind, not an anonymous volume');
  });

  it('--read-only, --entrypoint "", a network by NetworkingConfig, a string Cmd', () => {
    const { req } = create({
      Image: 'busybox',
      Cmd: 'true',
      Entrypoint: [''],
      HostConfig: { ReadonlyRootfs: true },
      NetworkingConfig: { EndpointsConfig: { proj_default: { Aliases: ['web'] } } },
    });
    assert.equal(req.readWrite, undefined);
    assert.deepEqual(req.entrypoint, []);
    assert.deepEqual(req.cmd, ['true']);
    assert.equal(req.networkMode, 'proj_default');
    assert.equal(create({ Image: 'b', NetworkDisabled: true }).req.networkMode, 'none');
    assert.equal(
      create({ Image: 'b', HostConfig: { StorageOpt: { size: '1g' } } }).req.writableSizeBytes,
      1024 ** 3,
    );
  });

  it('refuses what berth cannot honour, naming the field', () => {
    refused(null, /Config cannot be empty/);
    refused({ Cmd: ['true'] }, /Image/);
    refused({ Image: 'b', HostConfig: { Memory: 'lots' } }, /HostConfig\.Memory/);
    refused({ Image: 'b', HostConfig: { Links: ['a:b'] } }, /HostConfig\.Links/);
    refused({ Image: 'b', HostConfig: { Init: true } }, /HostConfig\.Init/);
    refused({ Image: 'b', HostConfig: { PidMode: 'host' } }, /HostConfig\.PidMode/);
    refused({ Image: 'b', HostConfig: { Runtime: 'kata' } }, /HostConfig\.Runtime/);
    refused({ Image: 'b', HostConfig: { LogConfig: { Type: 'syslog' } } }, /syslog/);
    refused({ Image: 'b', HostConfig: { Binds: ['/a:/b:shared'] } }, /shared/);
    refused({ Image: 'b', HostConfig: { NanoCpus: 1e9, CpuQuota: 50000 } }, /NanoCpus/);
    refused({ Image: 'b', HostConfig: { PortBindings: { 'http/tcp': [] } } }, /PortBindings/);
    refused({ Image: 'b', HostConfig: { UsernsMode: 'ns:x' } }, /UsernsMode/);
    refused(
      {
        Image: 'b',
        NetworkingConfig: { EndpointsConfig: { a: {}, b: {} } },
      },
      /one network/,
    );
    refused(
      {
        Image: 'b',
        NetworkingConfig: { EndpointsConfig: { a: { IPAMConfig: { IPv4Address: '10.0.0.9' } } } },
      },
      /IPv4Address/,
    );
    refused(
      { Image: 'b', HostConfig: { ReadonlyRootfs: true, StorageOpt: { size: '1g' } } },
      /read-only/,
    );
  });
});

const ev = (e: Partial<EventRecord>): EventRecord => ({
  seq: 1,
  time: '',
  timeNano: 1_796_019_384_462_123_456n,
  type: 'container',
  action: 'die',
  actorId: 'c'.repeat(64),
  attributes: { name: 'web', image: 'busybox', exitCode: '3', tier: 'front' },
  ...e,
});

describe('docker events', () => {
  it("are Docker's messages, legacy fields and an exact timeNano included", () => {
    const line = dockerEventLine(toDockerEvent(ev({})));
    assert.ok(line.endsWith('"timeNano":1796019384462123456}\n'));
    const m = JSON.parse(line) as Record<string, unknown>;
    assert.deepEqual(
      { ...m, timeNano: undefined },
      {
        status: 'die',
        id: 'c'.repeat(64),
        from: 'busybox',
        Type: 'container',
        Action: 'die',
        Actor: {
          ID: 'c'.repeat(64),
          Attributes: { name: 'web', image: 'busybox', exitCode: '3', tier: 'front' },
        },
        scope: 'local',
        time: 1796019384,
        timeNano: undefined,
      },
    );
    assert.equal(toDockerEvent(ev({ action: 'restart' })).action, 'start');
    assert.equal(
      toDockerEvent(ev({ action: 'health_status', attributes: { healthStatus: 'healthy' } }))
        .action,
      'health_status: healthy',
    );
    const pull = toDockerEvent(
      ev({
        type: 'image',
        action: 'pull',
        actorId: 'sha256:x',
        attributes: { name: 'busybox:latest' },
      }),
    );
    assert.equal(pull.actorId, 'busybox:latest');
    assert.equal((JSON.parse(dockerEventLine(pull)) as { from?: string }).from, undefined);
  });

  it("filter in Docker's forms", () => {
    const d = toDockerEvent(ev({}));
    const f = (json: unknown) => dockerEventFilter(JSON.stringify(json))(d);
    assert.ok(f({ label: ['tier=front'] }));
    assert.ok(f({ label: { 'tier=front': true } }));
    assert.ok(!f({ label: ['tier=back'] }));
    assert.ok(f({ event: ['start', 'die'], type: ['container'] }));
    assert.ok(!f({ type: ['image'] }));
    assert.ok(!f({ type: ['service'] }), "swarm's types match nothing");
    assert.ok(f({ scope: ['local'] }));
    assert.ok(!f({ scope: ['swarm'] }));
    assert.ok(f({ container: ['web'] }) && f({ container: ['cccc'] }));
    assert.throws(() => f({ bogus: ['x'] }), /invalid filter 'bogus'/);
    assert.throws(() => f({ type: ['thing'] }), /invalid event type/);
  });

  it('since and until in Unix seconds with a fraction, RFC 3339 or durations', () => {
    assert.equal(timeNano('1796019384.462123456', 'since'), 1_796_019_384_462_123_456n);
    assert.equal(timeNano('1796019384', 'since'), 1_796_019_384_000_000_000n);
    assert.equal(timeNano('2026-11-30T06:16:24.5Z', 'since'), 1_796_019_384_500_000_000n);
    assert.equal(timeNano(undefined, 'since'), undefined);
    assert.throws(() => timeNano('yesterday', 'since'), /since/);
  });
});

describe('docker API versions and query forms', () => {
  it('strips /v1.NN and refuses versions out of range', () => {
    assert.equal(stripVersion('/v1.41/containers/json?all=1'), '/containers/json?all=1');
    assert.equal(stripVersion('/containers/json'), '/containers/json');
    checkApiVersion('/v1.24/version');
    checkApiVersion('/v1.41/version');
    checkApiVersion('/version');
    assert.throws(() => checkApiVersion('/v1.43/version'), /1\.43 is too new/);
    assert.throws(() => checkApiVersion('/v1.12/version'), /too old/);
  });

  it('reads booleans as dockerd does', () => {
    for (const t of ['1', 'true', 'True', 'yes', 'x']) assert.ok(dockerBool(t), t);
    for (const f of [undefined, null, '', '0', 'false', 'FALSE', 'no', 'none'])
      assert.ok(!dockerBool(f), String(f));
  });
});
