// The composition root: reads options, opens the store, builds the drivers, the engine and
// the API in this one file, and handles signals. Nothing else constructs long-lived parts.
import { existsSync } from 'node:fs';
import { mkdir, statfs } from 'node:fs/promises';
import type { Server as NetServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import pino from 'pino';
import { buildApi, type ApiDeps } from '../api/server.ts';
import { buildDockerApi } from '../api/docker/server.ts';
import { startMetricsListener } from '../api/metrics.ts';
import { Cgroups } from '../cgroups/index.ts';
import {
  ContainerEngine,
  DEFAULT_TMPFS,
  EventBus,
  ExecService,
  ImageService,
  ImageTransfer,
  ImageArchives,
  RegistryLogin,
  StatsService,
  VolumeService,
  NetworkService,
  PortAllocator,
  parsePortRange,
  LogService,
  parseLogOpts,
  parseSize,
} from '../engine/index.ts';
import { usernsOptions } from '../engine/userns.ts';
import { parseDurationMs } from '../util/time.ts';
import { HostAddress } from '../network/host-address.ts';
import { CredentialStore } from '../images/credentials.ts';
import { RegistryClient } from '../images/registry.ts';
import { Runc } from '../runtime/runc.ts';
import { Store } from '../store/index.ts';
import { BerthError, errorMessage } from '../util/errors.ts';
import { lockRoot } from './lock.ts';
import { pruneEvents, startEventRetention } from './event-retention.ts';
import { formatAddress, listenTcp, listenUnix, loadTls, planListeners } from './listeners.ts';

const here = dirname(fileURLToPath(import.meta.url));
// dist/src/daemon -> repository root
const repoRoot = resolve(here, '..', '..', '..');

export interface DaemonOptions {
  root: string;
  runRoot: string;
  socket: string;
  // The Docker-compatible API's socket (api/docker/); '' serves none. Default:
  // RUN_ROOT/docker.sock.
  dockerSocket?: string;
  // Extra API listeners, Docker's -H: tcp://HOST:PORT (mutual TLS), or unix:// for the socket.
  host: string[];
  group: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  insecureTcp?: boolean;
  apiReadTimeout: string;
  runc: string;
  monitor: string;
  busybox: string;
  cgroupParent: string;
  pidsLimit: number;
  writableSize: string;
  dataHighWater: string;
  logLevel: string;
  logOpt: string[];
  logHostCap?: string;
  removedLogRetention: string;
  metricsAddr?: string;
  statsInterval: string;
  eventsMaxCount: string;
  eventsMaxAge: string;
  bridgeSubnet: string;
  advertiseIp?: string;
  portRange: string;
  usernsDefault: string;
  usernsPool?: string;
  bridgeName: string;
  insecureRegistry: string[];
  registryCertsDir: string;
}

export function daemonCommand(): Command {
  return new Command('daemon')
    .description('Run berthd, the container host agent')
    .option('--root <dir>', 'data root (store, logs, images)', '/var/lib/berth')
    .option('--run-root <dir>', 'run root (socket, bundles, monitor state)', '/run/berth')
    .option('--socket <path>', 'API socket (default: RUN_ROOT/berth.sock)')
    .option(
      '--docker-socket <path>',
      "Docker-compatible API socket (default: RUN_ROOT/docker.sock; '' to serve none)",
    )
    .option(
      '-H, --host <unix://PATH|tcp://HOST:PORT>',
      'serve the API here too (repeatable); tcp:// needs --tls-cert, --tls-key and --tls-ca',
      (v: string, p: string[]) => [...p, v],
      [],
    )
    .option(
      '--group <name|gid>',
      'group owning the API socket, mode 0660 (missing group or "": root only)',
      'berth',
    )
    .option('--tls-cert <file>', "berthd's TLS certificate (PEM) for its tcp:// listeners")
    .option('--tls-key <file>', "the certificate's private key (PEM)")
    .option('--tls-ca <file>', 'CA certificates (PEM) that client certificates must chain to')
    .option(
      '--insecure-tcp',
      'serve tcp:// listeners WITHOUT TLS or authentication (anyone who connects is root)',
    )
    .option(
      '--api-read-timeout <duration>',
      "how long a client may take to send a request's headers, or pause in its body",
      '60s',
    )
    .option('--runc <path>', 'OCI runtime binary', '/usr/sbin/runc')
    .option('--monitor <path>', 'berth-monitor binary', join(repoRoot, 'monitor', 'berth-monitor'))
    .option('--busybox <path>', 'static busybox for the built-in image', '/bin/busybox')
    .option('--cgroup-parent <name>', 'cgroup parent for containers', 'berth')
    .option('--pids-limit <n>', 'default pids limit per container', (v) => Number(v), 4096)
    .option('--writable-size <size>', 'default size of a --read-write root filesystem', '10g')
    .option(
      '--data-high-water <percent>',
      'refuse new containers while the data filesystem is fuller than this (100: never)',
      '90',
    )
    .option('--log-level <level>', 'log level', 'info')
    .option(
      '--log-opt <key=value>',
      'default container log option (max-size, max-file, compress)',
      (v: string, p: string[]) => [...p, v],
      [],
    )
    .option(
      '--log-host-cap <size>',
      'cap on all rotated container logs together (default: 10% of the data filesystem)',
    )
    .option(
      '--metrics-addr <host:port>',
      'also serve /metrics on this TCP address (for Prometheus)',
    )
    .option('--stats-interval <duration>', 'how often container metrics are sampled', '1s')
    .option(
      '--removed-log-retention <duration>',
      'how long logs of removed containers stay in the journal',
      '24h',
    )
    .option('--events-max-count <n>', 'events kept in the journal, newest first', '1000000')
    .option('--events-max-age <duration>', 'how long events stay in the journal', '720h')
    .option('--bridge-subnet <cidr>', 'subnet of the default network, bridge', '10.213.0.0/16')
    .option(
      '--advertise-ip <ip>',
      "the host address containers are told they are reached at (default: the default route's)",
    )
    .option('--port-range <from-to>', 'host ports allocated for -p and --port', '20000-32000')
    .option(
      '--userns-default <mode>',
      'user namespace of a container created without --userns: host or auto',
      'host',
    )
    .option(
      '--userns-pool <start:count>',
      "host ids --userns=auto ranges come from (default: user berth's /etc/subuid and /etc/subgid, else 100000000:2000000000)",
    )
    .option(
      '--bridge-name <ifname>',
      'Linux bridge of the default network (give berthds that share a host each their own)',
      'berth0',
    )
    .option(
      '--insecure-registry <host[:port]|cidr>',
      'registry reached over plain HTTP or unverified TLS (loopback always is)',
      (v: string, p: string[]) => [...p, v],
      [],
    )
    .option(
      '--registry-certs-dir <dir>',
      "extra CAs and client certificates per registry, in docker's certs.d layout",
      '/etc/berth/certs.d',
    )
    .action(async (o: Omit<DaemonOptions, 'socket'> & { socket?: string }) => {
      const runRoot = resolve(o.runRoot);
      // -H unix://PATH is the socket too (Docker's spelling); checked with the TCP flags.
      const plan = planListeners({
        hosts: o.host,
        socket: o.socket === undefined ? undefined : resolve(o.socket),
        defaultSocket: join(runRoot, 'berth.sock'),
        tlsCert: o.tlsCert,
        tlsKey: o.tlsKey,
        tlsCa: o.tlsCa,
        insecureTcp: o.insecureTcp ?? false,
      });
      await runDaemon({
        ...o,
        root: resolve(o.root),
        runRoot,
        socket: resolve(plan.socket),
        dockerSocket:
          o.dockerSocket === undefined
            ? join(runRoot, 'docker.sock')
            : o.dockerSocket && resolve(o.dockerSocket),
      });
    });
}

export async function runDaemon(o: DaemonOptions): Promise<void> {
  const log = pino({ level: o.logLevel, base: { pid: process.pid } });
  // Unix socket paths are limited to 108 bytes; a monitor's live under RUN_ROOT/c/<id>/.
  if (join(o.runRoot, 'c', 'x'.repeat(64), 'attach-ro.sock').length > 107) {
    throw new BerthError(
      'INVALID_ARGUMENT',
      `Invalid run-root: ${o.runRoot} is too long for unix socket paths (max 25 characters)`,
    );
  }
  for (const bin of [o.runc, o.monitor, o.busybox]) {
    if (!existsSync(bin))
      throw new BerthError('INVALID_ARGUMENT', `Missing ${bin}: run the set-up first (see README)`);
  }
  const apiReadTimeoutMs = parseDurationMs(o.apiReadTimeout);
  if (apiReadTimeoutMs === undefined || apiReadTimeoutMs < 1000) {
    throw new BerthError(
      'INVALID_ARGUMENT',
      `Invalid api-read-timeout: "${o.apiReadTimeout}" is not a duration of at least 1s`,
    );
  }
  // Refused before anything is opened: a TCP listener without mutual TLS, half the TLS
  // files, or files that do not make a key pair.
  const listeners = planListeners({
    hosts: o.host,
    socket: o.socket,
    defaultSocket: o.socket,
    tlsCert: o.tlsCert,
    tlsKey: o.tlsKey,
    tlsCa: o.tlsCa,
    insecureTcp: o.insecureTcp ?? false,
  });
  const tlsContext = listeners.tls ? await loadTls(listeners.tls) : undefined;
  await mkdir(o.root, { recursive: true, mode: 0o711 });
  await mkdir(join(o.root, 'images'), { recursive: true, mode: 0o700 });
  // Searchable, not listable: the socket in it is reached by its group (listeners.ts).
  await mkdir(o.runRoot, { recursive: true, mode: 0o711 });
  await mkdir(join(o.runRoot, 'c'), { recursive: true, mode: 0o700 });
  await mkdir(join(o.root, 'logs'), { recursive: true, mode: 0o700 });
  const logOpts: Record<string, string> = {};
  for (const kv of o.logOpt) {
    const i = kv.indexOf('=');
    if (i <= 0)
      throw new BerthError('INVALID_ARGUMENT', `Invalid log-opt: "${kv}" is not KEY=VALUE`);
    logOpts[kv.slice(0, i)] = kv.slice(i + 1);
  }
  // Bounded by default, unlike docker's json-file: 5 files of 10 MiB per container.
  const logDefaults = parseLogOpts(logOpts, {
    maxSize: 10 * 1024 * 1024,
    maxFiles: 5,
    compress: false,
  });
  const dataFs = await statfs(o.root);
  const hostCapBytes =
    o.logHostCap !== undefined
      ? parseSize(o.logHostCap, 'log-host-cap')
      : Math.floor(dataFs.blocks * dataFs.bsize * 0.1);
  const removedRetentionMs = parseDurationMs(o.removedLogRetention);
  if (removedRetentionMs === undefined) {
    throw new BerthError(
      'INVALID_ARGUMENT',
      `Invalid removed-log-retention: "${o.removedLogRetention}" is not a duration`,
    );
  }
  const eventsMaxCount = Number(o.eventsMaxCount);
  if (!Number.isSafeInteger(eventsMaxCount) || eventsMaxCount < 1) {
    throw new BerthError(
      'INVALID_ARGUMENT',
      `Invalid events-max-count: "${o.eventsMaxCount}" is not a whole number of at least 1`,
    );
  }
  const eventsMaxAgeMs = parseDurationMs(o.eventsMaxAge);
  if (eventsMaxAgeMs === undefined) {
    throw new BerthError(
      'INVALID_ARGUMENT',
      `Invalid events-max-age: "${o.eventsMaxAge}" is not a duration`,
    );
  }
  const lock = lockRoot(o.root);
  // The run root too: a second berthd on another data root but this run root would take
  // the first one's monitors and runc state for leftovers and clean them away.
  const runLock = lockRoot(o.runRoot);

  const store = new Store(join(o.root, 'berth.db'));
  const retention = { maxCount: eventsMaxCount, maxAgeMs: eventsMaxAgeMs };
  await pruneEvents(store.events, retention, log);
  const stopRetention = startEventRetention(store.events, retention, log);
  const events = new EventBus(store);
  const cgroups = new Cgroups();
  const runc = new Runc({ binary: o.runc, root: join(o.runRoot, 'runc') });
  const images = new ImageService(store, join(o.root, 'images'), events);
  await images.init();
  const credentials = new CredentialStore(o.root);
  const registryClient = new RegistryClient({
    credentials: credentials.lookup(),
    insecureRegistries: o.insecureRegistry,
    certsDir: o.registryCertsDir,
    userAgent: `berth/${process.env['npm_package_version'] ?? '0.1.0'}`,
  });
  const transfer = new ImageTransfer(images, registryClient, events);
  const archives = new ImageArchives(images, events);
  const login = new RegistryLogin(credentials, registryClient);
  const logs = new LogService(
    join(o.root, 'logs'),
    { defaults: logDefaults, hostCapBytes, removedRetentionMs },
    store,
    events,
    log,
  );
  const userns = usernsOptions(o.usernsDefault, o.usernsPool);
  for (const w of userns.warnings) log.warn(w);
  log.info({ ...userns.options, source: userns.source }, 'user namespaces');
  const containers = new ContainerEngine(store, images, logs, runc, cgroups, events, log, {
    dataRoot: o.root,
    runRoot: o.runRoot,
    monitorBinary: o.monitor,
    cgroupParent: o.cgroupParent,
    pidsLimit: o.pidsLimit,
    tmpfs: DEFAULT_TMPFS,
    shmSizeBytes: 64 * 1024 * 1024,
    writableSizeBytes: parseSize(o.writableSize, 'writable-size'),
    highWater: highWaterFraction(o.dataHighWater),
    userns: userns.options,
  });
  const exec = new ExecService(containers, images, runc, o.monitor);
  logs.startJanitor();
  const statsIntervalMs = parseDurationMs(o.statsInterval);
  if (statsIntervalMs === undefined || statsIntervalMs < 100) {
    throw new BerthError(
      'INVALID_ARGUMENT',
      `Invalid stats-interval: "${o.statsInterval}" is not a duration of at least 100ms`,
    );
  }
  const stats = new StatsService(cgroups, containers, store, events, log, statsIntervalMs);
  containers.init();
  // Before containers are reconciled: one restarted after a reboot binds its volumes.
  const volumes = new VolumeService(store, events, log, { dataRoot: o.root });
  await volumes.init();
  containers.setVolumes(volumes);
  const networks = new NetworkService(store, events, log, {
    runRoot: o.runRoot,
    bridgeSubnet: o.bridgeSubnet,
    bridgeName: o.bridgeName,
  });
  await networks.init();
  containers.setNetworking({
    networks,
    ports: new PortAllocator(store, parsePortRange(o.portRange)),
    hostAddress: new HostAddress(o.advertiseIp ? { advertiseIP: o.advertiseIp } : {}),
  });
  networks.setUsedBy((n) =>
    containers
      .list()
      .filter((c) => c.config.networkMode === 'bridge' && c.config.network === n.name)
      .map((c) => c.id),
  );
  // Docker's rule: a container that names a volume holds it, running or not.
  volumes.setUsedBy((name) =>
    containers
      .list()
      .filter((c) => c.config.mounts?.some((m) => m.type === 'volume' && m.source === name))
      .map((c) => c.id),
  );
  images.setUsedBy((id) =>
    containers
      .list()
      .filter((c) => c.config.imageId === id)
      .map((c) => c.id),
  );
  await images.seedBusybox(o.busybox);
  const t0 = performance.now();
  const rec = await containers.reconcile();
  log.info({ ...rec, ms: Math.round(performance.now() - t0) }, 'containers reconciled');

  const version = process.env['npm_package_version'] ?? '0.1.0';
  const apiDeps: ApiDeps = {
    containers,
    images,
    transfer,
    archives,
    login,
    exec,
    events,
    logs,
    stats,
    volumes,
    networks,
    version,
    limits: { readTimeoutMs: apiReadTimeoutMs },
  };
  const { app, upgrades, registry } = buildApi(apiDeps);
  app.server.on('upgrade', (req, sock, head) => {
    upgrades.handle(req, sock, head).catch((e: unknown) => {
      log.error({ err: errorMessage(e) }, 'upgrade failed');
      sock.destroy();
    });
  });
  // berthd binds its HTTP server itself (listeners.ts), so the socket never exists with
  // looser permissions than root and its group; TCP listeners feed the same server.
  await app.ready();
  const { gid } = await listenUnix(app.server, o.socket, o.group, log);
  // Docker's API on a socket of its own: the same engine in Docker's shapes, with the
  // same ownership and mode as the main socket.
  const dockerSocket = o.dockerSocket ?? join(o.runRoot, 'docker.sock');
  if (dockerSocket !== '' && resolve(dockerSocket) === resolve(o.socket))
    throw new BerthError(
      'INVALID_ARGUMENT',
      `Invalid docker-socket: ${dockerSocket} is the API socket too; give another path`,
      { field: 'docker-socket' },
    );
  const docker = dockerSocket !== '' ? buildDockerApi(apiDeps) : undefined;
  if (docker) {
    docker.app.server.on('upgrade', (req, sock, head) => {
      docker.upgrades.handle(req, sock, head).catch((e: unknown) => {
        log.error({ err: errorMessage(e) }, 'docker API upgrade failed');
        sock.destroy();
      });
    });
    await docker.app.ready();
    await listenUnix(docker.app.server, dockerSocket, o.group, log);
  }
  const tcpServers: NetServer[] = [];
  for (const addr of listeners.tcp) {
    tcpServers.push(
      await listenTcp(
        app.server,
        addr,
        {
          ...(tlsContext ? { tls: tlsContext } : {}),
          handshakeTimeoutMs: apiReadTimeoutMs,
        },
        log,
      ),
    );
  }
  const tcp = listeners.tcp.map(formatAddress);
  stats.start();
  const metricsServer = o.metricsAddr
    ? await startMetricsListener(o.metricsAddr, registry)
    : undefined;
  store.tx(() =>
    events.append({
      type: 'daemon',
      action: 'start',
      actorId: String(process.pid),
      attributes: {
        socket: o.socket,
        ...(tcp.length > 0 ? { tcp: tcp.join(','), tls: listeners.tls ? 'mutual' : 'none' } : {}),
      },
    }),
  );
  log.info(
    {
      socket: o.socket,
      socketGroup: gid ?? null,
      dockerSocket: docker ? dockerSocket : null,
      ...(tcp.length > 0 ? { tcp, tls: listeners.tls ? 'mutual' : 'NONE' } : {}),
      root: o.root,
      runRoot: o.runRoot,
      cgroup: cgroups.version,
    },
    'berthd ready',
  );

  let stopping = false;
  const shutdown = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ sig }, 'shutting down; containers keep running');
    store.tx(() =>
      events.append({
        type: 'daemon',
        action: 'stop',
        actorId: String(process.pid),
        attributes: { signal: sig },
      }),
    );
    stats.stop();
    stopRetention();
    metricsServer?.close();
    containers.detachAll();
    for (const s of tcpServers) s.close();
    // Hijacked streams (attach, logs -f) would hold close() open forever.
    app.server.closeAllConnections();
    app.server.close();
    await app.close().catch(() => undefined);
    docker?.app.server.closeAllConnections();
    docker?.app.server.close();
    await docker?.app.close().catch(() => undefined);
    store.close();
    lock.close();
    runLock.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

function highWaterFraction(v: string): number {
  const n = Number(v.replace(/%$/, ''));
  if (!(v.trim() !== '' && n > 0 && n <= 100))
    throw new BerthError(
      'INVALID_ARGUMENT',
      `Invalid data-high-water: "${v}" is not a percentage from 1 to 100`,
      { field: 'data-high-water' },
    );
  return n / 100;
}
