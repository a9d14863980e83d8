// The composition root: reads options, opens the store, builds the drivers, the engine and
// the API in this one file, and handles signals. Nothing else constructs long-lived parts.
import { existsSync } from 'node:fs';
import { chmod, mkdir, rm, statfs } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import pino from 'pino';
import { buildApi } from '../api/server.ts';
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
import { parseDurationMs } from '../util/time.ts';
import { HostAddress } from '../network/host-address.ts';
import { CredentialStore } from '../images/credentials.ts';
import { RegistryClient } from '../images/registry.ts';
import { Runc } from '../runtime/runc.ts';
import { Store } from '../store/index.ts';
import { BerthError, errorMessage } from '../util/errors.ts';
import { lockRoot } from './lock.ts';
import { pruneEvents, startEventRetention } from './event-retention.ts';

const here = dirname(fileURLToPath(import.meta.url));
// dist/src/daemon -> repository root
const repoRoot = resolve(here, '..', '..', '..');

export interface DaemonOptions {
  root: string;
  runRoot: string;
  socket: string;
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
      await runDaemon({
        ...o,
        root: resolve(o.root),
        runRoot,
        socket: resolve(o.socket ?? join(runRoot, 'berth.sock')),
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
  await mkdir(o.root, { recursive: true, mode: 0o711 });
  await mkdir(join(o.root, 'images'), { recursive: true, mode: 0o700 });
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
  const { app, upgrades, registry } = buildApi({
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
  });
  app.server.on('upgrade', (req, sock, head) => {
    upgrades.handle(req, sock, head).catch((e: unknown) => {
      log.error({ err: errorMessage(e) }, 'upgrade failed');
      sock.destroy();
    });
  });
  await rm(o.socket, { force: true });
  await mkdir(dirname(o.socket), { recursive: true });
  await app.listen({ path: o.socket });
  stats.start();
  const metricsServer = o.metricsAddr
    ? await startMetricsListener(o.metricsAddr, registry)
    : undefined;
  await chmod(o.socket, 0o660);
  store.tx(() =>
    events.append({
      type: 'daemon',
      action: 'start',
      actorId: String(process.pid),
      attributes: { socket: o.socket },
    }),
  );
  log.info(
    { socket: o.socket, root: o.root, runRoot: o.runRoot, cgroup: cgroups.version },
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
    // Hijacked streams (attach, logs -f) would hold close() open forever.
    app.server.closeAllConnections();
    await app.close().catch(() => undefined);
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
