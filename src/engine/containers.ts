// The container lifecycle. Every state change is committed to the store (with its event)
// before it is acted on or announced; containers live under their own monitors, never as
// berthd's children.
import { EventEmitter, once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, statfs, writeFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Cgroups } from '../cgroups/index.ts';
import { resolveUser } from '../images/users.ts';
import { resolveExtraHosts, writeEtcFiles } from '../network/etc-files.ts';
import { checkNetworkFields, portsForMode, publishAllRequests } from './ports.ts';
import { networkEnv, networkJson } from '../network/self-knowledge.ts';
import type { NetworkAttachment } from '../types/network.ts';
import type { PortBinding } from '../types/ports.ts';

import {
  connectAttach,
  launchMonitor,
  MonitorConnection,
  readExitRecord,
  readMonitorEvents,
  type ExitRecord,
} from '../runtime/monitor.ts';
import type { Runc } from '../runtime/runc.ts';
import { buildProcess, buildSpec, linuxResources, type TmpfsMount } from '../runtime/spec.ts';
import {
  mountWritable,
  unmountWritable,
  writablePaths,
  writableUsage,
  mountpointRootPaths,
  needsMountpoints,
  prepareMountpointRoot,
  type MountpointRoot,
  type WritablePaths,
} from '../runtime/writable-root.ts';
import type { Store } from '../store/index.ts';
import type {
  CreateContainerRequest,
  MountRequest,
  ResourcesRequest,
  RestartPolicyRequest,
  WaitCondition,
} from '../types/api.ts';
import type {
  ContainerConfig,
  ContainerRecord,
  ContainerState,
  ContainerUpdate,
  HealthState,
  MountSpec,
} from '../types/domain.ts';
import { BerthError, errorMessage, invalid } from '../util/errors.ts';
import { ID_PATTERN, NAME_PATTERN, newId } from '../util/ids.ts';
import { findProcesses, hardNofile, processMatches } from '../util/proc.ts';
import { parseSignal } from '../util/signals.ts';
import { toLogTime } from '../util/time.ts';
import type { Logger } from '../util/logger.ts';
import type { EventBus } from './events.ts';
import type { ImageService } from './images.ts';
import { parseLogOpts, type LogService } from './logs.ts';
import { checkResources, readHostLimits, type HostLimits } from './resources.ts';
import { assertCan } from './lifecycle.ts';
import { KeyedMutex } from './mutex.ts';
import { generateName } from './names.ts';
import { newContainerRecord } from './records.ts';
import { ContainerNetwork, type NetInfo, type Networking } from './container-network.ts';
import { checkHealthcheck } from './health-config.ts';
import { checkMounts, defaultTmpfs, ociMounts } from './mounts.ts';
import { checkSecurity, processSecurity, specSecurity } from './security.ts';
import { runProbe } from './health-exec.ts';
import { HealthService } from './health.ts';
import {
  checkRestartPolicy,
  monitorRestartArgs,
  NO_RESTART as NO_RESTART_POLICY,
  startsWithDaemon,
} from './restart-policy.ts';
import {
  DEFAULT_USERNS_POOL,
  prepareUsernsRoot,
  releaseUserns,
  startUserns,
  UsernsAllocator,
  usernsFile,
  usernsLowers,
  type UsernsOptions,
} from './userns.ts';

// What the engine needs of the volume service.
export interface VolumeProvider {
  ensure(name: string): Promise<unknown>;
  mountpoint(name: string): string;
  // The path to bind, after making sure a sized volume's filesystem is mounted there (a
  // bare directory would put the container's writes on the host disk without a limit).
  prepare(name: string): Promise<string>;
}

export interface ContainerEngineOptions {
  readonly dataRoot: string;
  readonly runRoot: string;
  readonly monitorBinary: string;
  readonly cgroupParent: string;
  readonly pidsLimit: number;
  readonly tmpfs: readonly TmpfsMount[];
  readonly shmSizeBytes: number;
  // Upper-layer size of a writable root unless the container says.
  readonly writableSizeBytes: number;
  // Fraction of the data filesystem in use above which creates are refused (1: never).
  readonly highWater: number;
  // --userns-default and the pool of --userns=auto ranges; absent: host, the default pool.
  readonly userns?: UsernsOptions;
}

interface AttachClient {
  readonly socket: Duplex;
  readonly stdin: boolean;
}

interface Live {
  readonly conn: MonitorConnection;
}

const MIB = 1024 * 1024;

export const DEFAULT_TMPFS: readonly TmpfsMount[] = [
  { path: '/tmp', sizeBytes: 64 * MIB, mode: '1777' },
  { path: '/var/tmp', sizeBytes: 64 * MIB, mode: '1777' },
  { path: '/run', sizeBytes: 16 * MIB, mode: '755' },
];

function envKey(e: string): string {
  const i = e.indexOf('=');
  return i < 0 ? e : e.slice(0, i);
}

// Later entries win, and each key appears once (with duplicates, which one a program
// sees depends on its libc).
export function mergeEnv(base: readonly string[], over: readonly string[]): string[] {
  const m = new Map<string, string>();
  for (const e of [...base, ...over]) m.set(envKey(e), e);
  return [...m.values()];
}

export class ContainerEngine {
  private readonly store: Store;
  private readonly images: ImageService;
  private readonly logs: LogService;
  private readonly runc: Runc;
  private readonly cgroups: Cgroups;
  private readonly events: EventBus;
  private readonly log: Logger;
  private readonly opts: ContainerEngineOptions;
  private readonly mutex = new KeyedMutex();
  private readonly live = new Map<string, Live>();
  private readonly pendingAttach = new Map<string, Set<AttachClient>>();
  private readonly notify = new EventEmitter();
  private readonly nofile = hardNofile();
  private readonly host: HostLimits = readHostLimits();
  private readonly health: HealthService;
  private volumes: VolumeProvider | undefined;
  private readonly network: ContainerNetwork;
  private readonly userns: UsernsAllocator;

  constructor(
    store: Store,
    images: ImageService,
    logs: LogService,
    runc: Runc,
    cgroups: Cgroups,
    events: EventBus,
    log: Logger,
    opts: ContainerEngineOptions,
  ) {
    this.store = store;
    this.images = images;
    this.logs = logs;
    this.runc = runc;
    this.cgroups = cgroups;
    this.events = events;
    this.log = log;
    this.opts = opts;
    this.notify.setMaxListeners(0);
    this.network = new ContainerNetwork(store, log, (id) => this.stateDir(id));
    this.userns = new UsernsAllocator(
      store,
      opts.userns ?? { defaultMode: 'host', pool: DEFAULT_USERNS_POOL },
    );
    this.health = new HealthService(
      {
        probe: (id, argv, timeoutMs) => this.probe(id, argv, timeoutMs),
        record: (id, state, changed) => this.recordHealth(id, state, changed),
        unhealthy: (id) => this.onUnhealthy(id),
      },
      log,
    );
  }

  init(): void {
    // Once at start, so a host without the controllers fails here rather than at a start.
    this.cgroups.ensureMonitorGroup(this.monitorGroup());
  }

  private monitorGroup(): string {
    return `${this.opts.cgroupParent}.monitors`;
  }

  stateDir(id: string): string {
    return join(this.opts.runRoot, 'c', id);
  }

  logPath(id: string): string {
    return this.logs.livePath(id);
  }

  private writable(id: string): WritablePaths {
    return writablePaths(
      join(this.opts.dataRoot, 'containers', id),
      join(this.opts.runRoot, 'mnt', id),
    );
  }

  private mntDir(id: string): string {
    return join(this.opts.runRoot, 'mnt', id);
  }

  private mountpointRoot(id: string): MountpointRoot {
    return mountpointRootPaths(join(this.opts.runRoot, 'mnt', id));
  }

  private cgroupsPath(id: string): string {
    return `/${this.opts.cgroupParent}/${id}`;
  }

  cgroupsPathOf(id: string): string {
    return this.cgroupsPath(id);
  }

  // ---- lookup ----

  resolve(ref: string): ContainerRecord {
    if (!ref) throw invalid('container', 'empty name or id');
    const byName = this.store.containers.byName(ref.startsWith('/') ? ref.slice(1) : ref);
    if (byName) return byName;
    if (/^[0-9a-f]+$/.test(ref)) {
      const m = this.store.containers.byIdPrefix(ref);
      if (m.length > 1)
        throw new BerthError('CONTAINER_AMBIGUOUS', `Container id prefix ${ref} is ambiguous`);
      if (m[0]) return m[0];
    }
    throw new BerthError('CONTAINER_NOT_FOUND', `No such container: ${ref}`);
  }

  list(): ContainerRecord[] {
    return this.store.containers.list();
  }

  // ---- create ----

  async create(req: CreateContainerRequest): Promise<ContainerRecord> {
    await this.checkHighWater();
    const image = this.images.resolve(req.image);
    if (req.name !== undefined && !NAME_PATTERN.test(req.name.replace(/^\//, ''))) {
      throw invalid('name', `"${req.name}" must match ${NAME_PATTERN.source}`);
    }
    for (const e of req.env ?? []) {
      if (!e || e.startsWith('=')) throw invalid('env', `"${e}" is not KEY=VALUE`);
    }
    const { mode: networkMode, network } = this.network.resolveMode(req.networkMode, (r) =>
      this.resolve(r),
    );
    checkNetworkFields(req);
    if (networkMode === 'container' && req.hostname)
      throw invalid('hostname', "conflicts with sharing another container's network");
    const portRequests = portsForMode(networkMode, [
      ...(req.ports ?? []),
      ...(req.publishAll
        ? publishAllRequests(image.config.exposedPorts ?? [], req.ports ?? [])
        : []),
    ]);
    const stopSignal = req.stopSignal ?? image.config.stopSignal ?? 'SIGTERM';
    if (parseSignal(stopSignal) === undefined)
      throw invalid('stopSignal', `"${stopSignal}" is not a signal`);
    if (
      req.stopTimeout !== undefined &&
      (req.stopTimeout < 0 || !Number.isInteger(req.stopTimeout))
    ) {
      throw invalid('stopTimeout', 'must be a whole number of seconds >= 0');
    }
    const workdir = req.workdir || image.config.workdir || '/';
    if (!workdir.startsWith('/')) throw invalid('workdir', `"${workdir}" is not an absolute path`);
    const hostname = req.hostname ?? '';
    if (hostname && !/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,62})$/.test(hostname)) {
      throw invalid('hostname', `"${hostname}" is not a valid hostname`);
    }
    // Docker: a new entrypoint discards the image's cmd unless one is given.
    const entrypoint = req.entrypoint ?? image.config.entrypoint;
    const cmd = req.cmd && req.cmd.length > 0 ? req.cmd : req.entrypoint ? [] : image.config.cmd;
    if (entrypoint.length + cmd.length === 0) {
      throw invalid('cmd', 'no command specified and the image has none');
    }
    const log = parseLogOpts(req.logOpts ?? {}, this.logs.defaults);
    const resources = checkResources(req.resources ?? {}, this.host);
    const mounts = checkMounts(req.mounts);
    // Before prepareMountSources, which makes host directories and volumes.
    const security = await checkSecurity(req, networkMode);
    const usernsMode = this.userns.mode(req, networkMode);
    if (
      req.shmSizeBytes !== undefined &&
      !(Number.isInteger(req.shmSizeBytes) && req.shmSizeBytes >= 4096)
    )
      throw invalid('shmSizeBytes', 'must be at least 4k');
    if (!req.readWrite && (req.writableSizeBytes !== undefined || req.ephemeral))
      throw invalid(
        req.ephemeral ? 'ephemeral' : 'writableSizeBytes',
        'applies to a writable root only (readWrite)',
      );
    if (
      req.writableSizeBytes !== undefined &&
      !(Number.isInteger(req.writableSizeBytes) && req.writableSizeBytes >= 16 * MIB)
    )
      throw invalid('writableSizeBytes', 'must be at least 16m');
    const restart = checkRestartPolicy(req.restartPolicy);
    if (restart.name !== 'no' && req.autoRemove)
      throw invalid(
        'restartPolicy',
        `conflicts with autoRemove: a ${restart.name} container is never removed on exit`,
      );
    const healthcheck = checkHealthcheck(req.healthcheck, image.config.healthcheck);
    const user = req.user ?? image.config.user;
    await resolveUser(await this.images.root(image.id), user); // fail at create, not at start
    // A taken name, known now, would otherwise be found only after the mount sources are
    // made (the insert checks again, for a create racing this one).
    const wantedName = req.name?.replace(/^\//, '');
    if (wantedName !== undefined && this.store.containers.byName(wantedName)) {
      throw new BerthError(
        'CONTAINER_NAME_IN_USE',
        `Conflict: the container name "${wantedName}" is already in use`,
        { field: 'name' },
      );
    }
    // Last of the checks: it makes host directories (createHostPath) and named volumes, so
    // a request refused for any other field must not get this far.
    await this.prepareMountSources(mounts, req.mounts ?? []);

    const id = newId();
    const config: ContainerConfig = {
      image: req.image,
      imageId: image.id,
      cmd,
      entrypoint,
      env: mergeEnv(image.config.env, req.env ?? []),
      workdir,
      user,
      // Docker: with the host's network a container takes the host's name by default.
      hostname: hostname || (networkMode === 'host' ? osHostname() : id.slice(0, 12)),
      labels: { ...image.config.labels, ...(req.labels ?? {}) },
      tty: req.tty ?? false,
      openStdin: req.openStdin ?? false,
      autoRemove: req.autoRemove ?? false,
      networkMode,
      ...(network !== undefined ? { network } : {}),
      ...(req.extraHosts?.length ? { extraHosts: [...req.extraHosts] } : {}),
      ...(req.dns?.length ? { dns: [...req.dns] } : {}),
      ...(req.dnsSearch?.length ? { dnsSearch: [...req.dnsSearch] } : {}),
      stopSignal,
      stopTimeout: req.stopTimeout ?? 10,
      log,
      resources,
      restart,
      ...(healthcheck ? { healthcheck } : {}),
      ...(mounts.length > 0 ? { mounts } : {}),
      ...(req.shmSizeBytes !== undefined ? { shmSizeBytes: req.shmSizeBytes } : {}),
      ...(req.readWrite
        ? {
            writable: {
              sizeBytes: req.writableSizeBytes ?? this.opts.writableSizeBytes,
              ephemeral: req.ephemeral ?? false,
            },
          }
        : {}),
      ...(req.tty && req.consoleSize ? { consoleSize: req.consoleSize } : {}),
      security,
    };
    const rec = newContainerRecord(id, '', config, toLogTime(Date.now()));
    // Creating a container only writes the store: everything on disk is made at start,
    // so a failed create has nothing to roll back but its row.
    return this.store.tx(() => {
      let name = req.name?.replace(/^\//, '');
      if (name !== undefined && this.store.containers.byName(name)) {
        throw new BerthError(
          'CONTAINER_NAME_IN_USE',
          `Conflict: the container name "${name}" is already in use`,
          { field: 'name' },
        );
      }
      name ??= generateName((n) => this.store.containers.byName(n) !== undefined);
      // A user namespace's range is taken in the same commit as the row (store/userns.ts).
      const made = this.userns.assign(rec, usernsMode);
      this.store.containers.insert({ ...made, name });
      // Host ports are the container's from create to removal, so they survive restarts;
      // allocated in the insert's transaction, so a clash leaves no container behind.
      this.network.allocatePorts(id, portRequests);
      this.events.append({
        type: 'container',
        action: 'create',
        actorId: id,
        attributes: this.attrs(config, name),
      });
      return { ...made, name };
    });
  }

  // A full data filesystem fails every container at once (logs, writable roots, volumes):
  // refuse new ones above the mark, and say so in the journal.
  private async checkHighWater(): Promise<void> {
    if (this.opts.highWater >= 1) return;
    const s = await statfs(this.opts.dataRoot);
    const used = s.blocks > 0 ? 1 - s.bavail / s.blocks : 0;
    if (used <= this.opts.highWater) return;
    const pct = (x: number) => `${Math.round(x * 1000) / 10}%`;
    this.store.tx(() =>
      this.events.append({
        type: 'daemon',
        action: 'disk-high-water',
        actorId: String(process.pid),
        attributes: { path: this.opts.dataRoot, used: pct(used), mark: pct(this.opts.highWater) },
      }),
    );
    throw new BerthError(
      'DISK_HIGH_WATER',
      `Cannot create a container: ${this.opts.dataRoot} is ${pct(used)} full, above the high-water mark of ${pct(this.opts.highWater)}`,
    );
  }

  // Bind sources must exist (docker's -v makes a missing directory; --mount does not);
  // a named volume is made if missing, as docker does.
  private async prepareMountSources(
    mounts: readonly MountSpec[],
    reqs: readonly MountRequest[],
  ): Promise<void> {
    for (const [i, m] of mounts.entries()) {
      if (m.type === 'bind' && !existsSync(m.source)) {
        if (!reqs[i]?.createHostPath)
          throw invalid(`mounts[${i}].source`, `${m.source} does not exist on the host`);
        await mkdir(m.source, { recursive: true, mode: 0o755 });
      }
      if (m.type === 'volume') {
        if (!this.volumes)
          throw new BerthError('NOT_IMPLEMENTED', 'Volumes are not available on this daemon');
        await this.volumes.ensure(m.source);
      }
    }
  }

  setVolumes(v: VolumeProvider): void {
    this.volumes = v;
  }

  setNetworking(n: Networking): void {
    this.network.set(n);
  }

  private volumePath(name: string): string {
    if (!this.volumes) throw new BerthError('NOT_IMPLEMENTED', 'Volumes are not available');
    return this.volumes.mountpoint(name);
  }

  // A privileged container says so in every event about it (create and start included).
  private attrs(config: ContainerConfig, name: string): Record<string, string> {
    return {
      ...config.labels,
      name,
      image: config.image,
      ...(config.security?.privileged ? { privileged: 'true' } : {}),
    };
  }

  // ---- start ----

  start(ref: string): Promise<ContainerRecord> {
    const c = this.resolve(ref);
    return this.mutex.run(c.id, () => this.startLocked(c.id));
  }

  // reason: why berthd itself starts a container that nobody asked to start (its restart
  // policy, after a reboot or a lost monitor); the start then counts as a restart.
  private async startLocked(id: string, reason?: string): Promise<ContainerRecord> {
    const c = this.get(id);
    if (c.state === 'running' || c.state === 'restarting') return c;
    assertCan('start', c.state, c.name);
    const prev = c.state;
    const restartCount = reason ? c.restartCount + 1 : 0;
    this.store.tx(() =>
      // A start makes a new state dir, so the monitor's event file starts over.
      this.store.containers.update(id, {
        state: 'starting',
        error: '',
        stoppedByUser: false,
        eventsOffset: 0,
        oomKills: 0,
        restartCount,
        nextRestartAt: '',
        health: null,
      }),
    );
    const stateDir = this.stateDir(id);
    let conn: MonitorConnection | undefined;
    try {
      if (c.config.writable) await mountWritable(this.writable(id), c.config.writable.sizeBytes);
      for (const m of c.config.mounts ?? [])
        if (m.type === 'volume') await this.volumes?.prepare(m.source);
      // A user namespace is made before the network, whose namespace it must own.
      const ns = await startUserns(c, this.opts.monitorBinary, this.mntDir(id), () =>
        this.network.disconnect(c),
      );
      const net = await this.network.connect(c, (x) => this.get(x), ns?.makeNetns);
      const { dir: bundle, mountpointRoot } = await this.writeBundle(c, net);
      const imageRoot = await this.images.root(c.config.imageId);
      await this.logs.prepare(id, c.name, c.config);
      const started = await launchMonitor({
        binary: this.opts.monitorBinary,
        id,
        bundle,
        runtime: this.runc.binary,
        runtimeRoot: this.runc.root,
        stateDir,
        logPath: this.logPath(id),
        oomFile: this.cgroups.oomFile(this.cgroupsPath(id)),
        // Made again if it went (an operator or a sweep removed the empty group): a few
        // mkdirs of existing directories, against every later start failing.
        cgroupProcs: this.cgroups.ensureMonitorGroup(this.monitorGroup()),
        terminal: c.config.tty,
        stdin: c.config.openStdin,
        logMaxSize: c.config.log.maxSize,
        logMaxFiles: c.config.log.maxFiles,
        restartArgs: monitorRestartArgs(c.config.restart ?? NO_RESTART_POLICY, restartCount),
        ...(c.config.userns
          ? {
              idmap: {
                ...c.config.userns,
                lowers: await usernsLowers(this.images, this.store, c.config.imageId),
              },
            }
          : {}),
        ...(c.config.writable
          ? {
              overlay: {
                lower: imageRoot,
                upper: this.writable(id).upper,
                work: this.writable(id).work,
                merged: this.writable(id).merged,
                reset: c.config.writable.ephemeral,
              },
            }
          : mountpointRoot
            ? { overlay: { lower: imageRoot, ...mountpointRoot, reset: true } }
            : {}),
      });
      conn = await MonitorConnection.connect(stateDir);
      const startedAt = new Date();
      const running = this.store.tx(() => {
        const r = this.store.containers.update(id, {
          state: 'running',
          pid: started.pid,
          monitorPid: started.monitorPid,
          startedAt: toLogTime(startedAt.getTime()),
          finishedAt: '',
          exitCode: 0,
          signal: 0,
          oomKilled: false,
        });
        this.events.append(
          {
            type: 'container',
            action: reason ? 'restart' : 'start',
            actorId: id,
            attributes: {
              ...this.attrs(c.config, c.name),
              ...(reason ? { attempt: String(restartCount), reason } : {}),
            },
          },
          startedAt,
        );
        return r;
      });
      this.track(id, conn);
      this.watchHealth(running);
      await this.flushPendingAttach(id);
      await conn.request('start');
      return running;
    } catch (e) {
      conn?.close();
      this.live.delete(id);
      await this.cleanupRuntime(id);
      await this.network.disconnect(c);
      const code =
        e instanceof BerthError && e.code === 'COMMAND_NOT_FOUND'
          ? 127
          : e instanceof BerthError && e.code === 'COMMAND_NOT_EXECUTABLE'
            ? 126
            : 128;
      this.store.tx(() =>
        this.store.containers.update(id, {
          state: prev,
          error: errorMessage(e),
          exitCode: code,
          pid: 0,
          monitorPid: 0,
        }),
      );
      this.closePendingAttach(id);
      this.notify.emit(`exit:${id}`);
      if (c.config.autoRemove) await this.removeLocked(id).catch(() => undefined);
      throw e;
    }
  }

  private async writeBundle(
    c: ContainerRecord,
    net: NetInfo,
  ): Promise<{ dir: string; mountpointRoot: MountpointRoot | undefined }> {
    const dir = this.stateDir(c.id);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const rootfs = await this.images.root(c.config.imageId);
    const user = await resolveUser(rootfs, c.config.user);
    const mounts = c.config.mounts ?? [];
    const memory = c.config.resources?.memory;
    const hostIP = await this.network.hostIP();
    const etc = await writeEtcFiles(dir, c.config.hostname, c.config.networkMode, '/etc', {
      ip: net.ip,
      aliases: c.config.networkMode === 'container' ? [] : [c.name],
      extraHosts: resolveExtraHosts(c.config.extraHosts ?? [], hostIP),
      peers: this.network.peersOf(c),
      ...(c.config.dns ? { dns: c.config.dns } : {}),
      ...(c.config.dnsSearch ? { dnsSearch: c.config.dnsSearch } : {}),
    });
    // What the container is told of how it is reached: env (under the user's, so an
    // explicit -e wins) and /run/berth/network.json, read-only.
    const knowledge = {
      mode: c.config.networkMode,
      hostIP,
      containerIP: net.ip,
      bindings: this.network.bindings(c.id),
    };
    const netDir = join(dir, 'berth');
    await mkdir(netDir, { mode: 0o755 });
    await writeFile(join(netDir, 'network.json'), networkJson(knowledge), { mode: 0o644 });
    const env = mergeEnv(
      [
        `HOSTNAME=${c.config.hostname}`,
        `HOME=${user.home}`,
        ...(c.config.tty ? ['TERM=xterm'] : []),
        ...networkEnv(knowledge),
      ],
      c.config.env,
    );
    const spec = buildSpec({
      rootfs: c.config.writable ? this.writable(c.id).merged : rootfs,
      readonlyRootfs: !c.config.writable,
      args: [...c.config.entrypoint, ...c.config.cmd],
      env,
      cwd: c.config.workdir,
      uid: user.uid,
      gid: user.gid,
      additionalGids: user.additionalGids,
      hostname: c.config.hostname,
      terminal: c.config.tty,
      networkMode: c.config.networkMode,
      etcFiles: etc,
      cgroupsPath: this.cgroupsPath(c.id),
      pidsLimit: this.opts.pidsLimit,
      nofileLimit: this.nofile,
      tmpfs: defaultTmpfs(this.opts.tmpfs, memory, mounts),
      shmSizeBytes: Math.min(
        c.config.shmSizeBytes ?? this.opts.shmSizeBytes,
        memory && memory > 0 ? memory : Infinity,
      ),
      mounts: [
        {
          destination: '/run/berth',
          type: 'bind',
          source: netDir,
          options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'],
        },
        ...ociMounts(mounts, (name) => this.volumePath(name), memory),
      ],
      ...(net.netnsPath ? { netnsPath: net.netnsPath } : {}),
      consoleSize: c.config.consoleSize,
      resources: c.config.resources,
      security: await specSecurity(c.config),
      userns: c.config.userns && { ...c.config.userns, path: usernsFile(this.mntDir(c.id)) },
    });
    let mountpointRoot: MountpointRoot | undefined;
    if (!c.config.writable && (await needsMountpoints(rootfs, spec.mounts))) {
      mountpointRoot = this.mountpointRoot(c.id);
      await prepareMountpointRoot(mountpointRoot);
      spec.root.path = mountpointRoot.merged;
    }
    // A user namespace: always a root of its own, over the image's layers idmapped.
    if (c.config.userns) {
      mountpointRoot = await prepareUsernsRoot({
        mapping: c.config.userns,
        merged: this.mountpointRoot(c.id).merged,
        mountpointRoot,
        writableUpper: c.config.writable ? this.writable(c.id).upper : undefined,
        ownFiles: [etc.hosts, etc.hostname, etc.resolvConf, netDir, join(netDir, 'network.json')],
        volumes: mounts.filter((m) => m.type === 'volume').map((m) => this.volumePath(m.source)),
        runRoot: this.opts.runRoot,
      });
      spec.root.path = mountpointRoot.merged;
    }
    await writeFile(join(dir, 'config.json'), JSON.stringify(spec));
    return { dir, mountpointRoot };
  }

  private async rewriteBundleResources(id: string, linux: Record<string, unknown>): Promise<void> {
    const file = join(this.stateDir(id), 'config.json');
    const spec = JSON.parse(await readFile(file, 'utf8')) as {
      linux?: { resources?: { devices?: unknown } } & Record<string, unknown>;
    };
    // The device rules were resolved at start (--device, --privileged): an update keeps them.
    const devices = spec.linux?.resources?.devices ?? linux['devices'];
    spec.linux = { ...spec.linux, resources: { ...linux, devices } };
    await writeFile(`${file}.tmp`, JSON.stringify(spec));
    await rename(`${file}.tmp`, file);
  }

  // Removes what a start made: runc state (and so the cgroups), the state dir. Idempotent.
  private async cleanupRuntime(id: string): Promise<void> {
    await this.runc
      .delete(id)
      .catch((e: unknown) => this.log.warn({ id, err: errorMessage(e) }, 'runc delete failed'));
    const left = this.cgroups.removeContainer(this.cgroupsPath(id));
    if (left.length > 0) this.log.warn({ id, left }, 'cgroup directories still busy');
    await this.releaseWritable(id);
    await rm(this.stateDir(id), { recursive: true, force: true });
  }

  // Unmounts a writable root (its data stays for the next start). Never removes the mount
  // directory while something is still mounted there.
  private async releaseWritable(id: string): Promise<void> {
    const p = this.writable(id);
    try {
      await unmountWritable(p);
      await releaseUserns(usernsFile(this.mntDir(id)));
      await rm(join(this.opts.runRoot, 'mnt', id), { recursive: true, force: true });
    } catch (e) {
      this.log.warn({ id, err: errorMessage(e) }, 'unmounting the writable root failed');
    }
  }

  // ---- exit tracking ----

  private track(id: string, conn: MonitorConnection): void {
    this.live.set(id, { conn });
    conn.onNotify = () => this.ingestSoon(id);
    void conn.closed.then(() =>
      this.mutex
        .run(id, () => this.onMonitorGone(id, conn))
        .catch((e: unknown) =>
          this.log.error({ id, err: errorMessage(e) }, 'recording an exit failed'),
        ),
    );
  }

  private async onMonitorGone(id: string, conn: MonitorConnection): Promise<void> {
    if (this.live.get(id)?.conn !== conn) return;
    this.live.delete(id);
    const c = this.store.containers.get(id);
    if (!c) return;
    let exit = await readExitRecord(this.stateDir(id));
    // Our connection ended but the monitor lives on (it dropped us, or it is just now
    // writing its exit record): reconnect, or wait for the record. A healthy container is
    // never killed over a lost socket.
    for (let i = 0; !exit && this.monitorAlive(c) && i < 20; i++) {
      try {
        this.track(id, await MonitorConnection.connect(this.stateDir(id)));
        return;
      } catch {
        await delay(100);
        exit = await readExitRecord(this.stateDir(id));
      }
    }
    await this.recordExit(c, exit);
  }

  private async recordExit(c: ContainerRecord, exit: ExitRecord | undefined): Promise<void> {
    const id = c.id;
    if (!exit) {
      // The monitor died without an exit record (killed by an operator, crashed, or the
      // host rebooted). Never show such a container as running: kill the orphan and say
      // what happened; its restart policy then decides (restartIfPolicy).
      this.log.error({ id }, 'monitor lost; stopping the orphaned container');
      await this.cleanupRuntime(id);
    } else {
      await this.ingestSerial(id);
    }
    // What the run held goes before the container shows as exited, so whoever sees it
    // exited finds its namespace, address and writable root already given back. Both are
    // idempotent: a crash before the commit below does them again.
    await this.releaseWritable(id);
    await this.network.disconnect(c);
    const finishedAt = exit ? new Date(exit.finishedAt) : new Date();
    const exitCode = exit ? exit.exitCode : 137;
    // Committed before the state dir goes: a crash in between re-reads the exit record.
    this.store.tx(() => {
      this.store.containers.update(id, {
        state: 'exited',
        exitCode,
        signal: exit?.signal ?? 9,
        oomKilled: exit?.oomKilled ?? false,
        finishedAt: exit?.finishedAt ?? toLogTime(finishedAt.getTime()),
        error: exit ? '' : 'monitor lost',
        nextRestartAt: '',
        pid: 0,
      });
      // With an exit record the monitor has put the `die` in its event file (ingested
      // above, with its real time); without one, berthd says what it knows.
      if (!exit) {
        this.events.append({
          type: 'container',
          action: 'monitor-lost',
          actorId: id,
          attributes: this.attrs(c.config, c.name),
        });
        this.events.append(
          {
            type: 'container',
            action: 'die',
            actorId: id,
            attributes: {
              ...this.attrs(c.config, c.name),
              exitCode: String(exitCode),
              signal: '9',
              oomKilled: 'false',
            },
          },
          finishedAt,
        );
      }
    });
    await rm(this.stateDir(id), { recursive: true, force: true });
    this.unwatchHealth(id);
    this.closePendingAttach(id);
    this.notify.emit(`exit:${id}`);
    if (c.config.autoRemove)
      await this.removeLocked(id).catch((e: unknown) =>
        this.log.error({ id, err: errorMessage(e) }, 'auto-remove failed'),
      );
    else if (!exit) this.restartIfPolicy(id, 'monitor-lost');
  }

  // berthd starts a container itself only when no monitor is left to do it: after a
  // reboot, or when a monitor died. Docker's rules (startsWithDaemon) say whether; the
  // delay is the policy's first. Queued behind the container's lock, so an operator's
  // stop or start in between wins.
  private restartIfPolicy(id: string, reason: string): void {
    const c = this.store.containers.get(id);
    const p = c?.config.restart;
    if (!c || !p || !startsWithDaemon(p, c.stoppedByUser, c.exitCode, c.restartCount)) return;
    const at = Date.now() + p.delayMs;
    this.store.tx(() => this.store.containers.update(id, { nextRestartAt: toLogTime(at) }));
    setTimeout(() => {
      void this.mutex
        .run(id, async () => {
          // Not while reconcile still sweeps what containers left: its network sweep
          // would take the namespace of a container started meanwhile.
          await this.reconciled;
          const cur = this.store.containers.get(id);
          if (!cur || cur.state !== 'exited' || cur.nextRestartAt !== toLogTime(at)) return;
          this.log.info({ id, reason }, 'starting by restart policy');
          await this.startLocked(id, reason);
        })
        .catch((e: unknown) =>
          this.log.error({ id, err: errorMessage(e) }, 'restart by policy failed'),
        );
    }, p.delayMs).unref();
  }

  private readonly ingesting = new Map<string, Promise<void>>();

  private ingestSoon(id: string): void {
    void this.ingestSerial(id).catch((e: unknown) =>
      this.log.warn({ id, err: errorMessage(e) }, 'reading monitor events failed'),
    );
  }

  // One ingest per container at a time, each after the previous, so two readers never
  // race for the same offset and none reads a file the next start replaced.
  private ingestSerial(id: string): Promise<void> {
    const prev = this.ingesting.get(id) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(() => this.ingestEvents(id));
    const tail = next.catch(() => undefined);
    this.ingesting.set(id, tail);
    void tail.then(() => {
      if (this.ingesting.get(id) === tail) this.ingesting.delete(id);
    });
    return next;
  }

  // Turns the monitor's durable event lines into journal events, exactly once: the offset
  // read up to commits with them.
  private async ingestEvents(id: string): Promise<void> {
    // A read takes at most a few MiB of events; go on until the file is read.
    while (await this.ingestBatch(id));
  }

  private async ingestBatch(id: string): Promise<boolean> {
    const c = this.store.containers.get(id);
    if (!c) return false;
    const { events, offset } = await readMonitorEvents(this.stateDir(id), c.eventsOffset);
    if (offset === c.eventsOffset) return false;
    let rotated = false;
    let exited = false;
    let restarted: ContainerRecord | undefined;
    this.store.tx(() => {
      // The record as the events leave it, in order: one run's exit, the restart planned,
      // the next run's start, each with the time the monitor saw it happen.
      let u: ContainerUpdate = {};
      let oomKills = c.oomKills;
      let dropped = 0;
      for (const e of events) {
        const { type, time, ...rest } = e;
        const at = new Date(time);
        const when = Number.isNaN(at.getTime()) ? new Date() : at;
        const attributes: Record<string, string> = { ...this.attrs(c.config, c.name) };
        for (const [k, v] of Object.entries(rest)) attributes[k] = String(v);
        let action = type;
        switch (type) {
          case 'log-rotated':
            rotated = true;
            break;
          case 'log-dropped':
            dropped += Number(rest['bytes']) || 0;
            break;
          case 'oom':
            oomKills = Math.max(oomKills, Number(rest['oomKills']) || 0);
            break;
          case 'exit':
            // Docker's name for it, so docker's filters and tools see it.
            action = 'die';
            exited = true;
            u = {
              ...u,
              exitCode: Number(rest['exitCode']) || 0,
              signal: Number(rest['signal']) || 0,
              oomKilled: rest['oomKilled'] === true,
              finishedAt: toLogTime(when.getTime()),
            };
            break;
          case 'restart-scheduled':
            u = { ...u, state: 'restarting', nextRestartAt: String(rest['restartAt'] ?? '') };
            break;
          case 'restart':
            oomKills = 0;
            u = {
              ...u,
              state: 'running',
              pid: Number(rest['pid']) || 0,
              startedAt: toLogTime(when.getTime()),
              restartCount: Number(rest['attempt']) || c.restartCount + 1,
              nextRestartAt: '',
              health: null,
            };
            break;
        }
        // The monitor's own time, to the nanosecond.
        this.events.append(
          { type: 'container', action, actorId: id, attributes },
          Number.isNaN(at.getTime()) ? when : time,
        );
      }
      const r = this.store.containers.update(id, {
        ...u,
        eventsOffset: offset,
        logDroppedBytes: c.logDroppedBytes + dropped,
        oomKills,
      });
      if (u.state === 'running') restarted = r;
    });
    if (rotated) this.logs.onRotated(id, c.config.log);
    if (exited) {
      this.unwatchHealth(id);
      this.notify.emit(`exit:${id}`);
    }
    if (restarted) this.watchHealth(restarted);
    return true;
  }

  // ---- stop / kill ----

  stop(ref: string, timeoutSec?: number): Promise<boolean> {
    const c = this.resolve(ref);
    return this.mutex.run(c.id, async () => {
      const cur = this.get(c.id);
      if (cur.state !== 'running' && cur.state !== 'restarting') {
        // A restart berthd itself has scheduled (restartIfPolicy) is called off too.
        if (cur.nextRestartAt)
          this.store.tx(() =>
            this.store.containers.update(c.id, { stoppedByUser: true, nextRestartAt: '' }),
          );
        return false;
      }
      this.store.tx(() => {
        this.store.containers.update(c.id, { stoppedByUser: true });
        this.events.append({
          type: 'container',
          action: 'stop',
          actorId: c.id,
          attributes: this.attrs(c.config, c.name),
        });
      });
      const t = (timeoutSec ?? cur.config.stopTimeout) * 1000;
      const sig = parseSignal(cur.config.stopSignal) ?? 15;
      await this.signalAndWait(c.id, sig, t);
      return true;
    });
  }

  // Sends sig, waits up to ms for the exit, then SIGKILL and waits again. The monitor is
  // told first that this run is the last, so no restart policy brings it back (and a
  // restart it is waiting to do is called off, which ends it at once).
  private async signalAndWait(id: string, sig: number, ms: number): Promise<void> {
    const live = this.live.get(id);
    if (!live) return;
    const exited = live.conn.closed;
    await live.conn.request('hold').catch(() => undefined);
    await live.conn.request(`kill ${sig}`).catch(() => undefined);
    const timedOut = await Promise.race([exited.then(() => false), delay(ms).then(() => true)]);
    if (timedOut) {
      await live.conn.request('kill 9').catch(() => undefined);
      await exited;
    }
    // The exit is recorded by onMonitorGone, which queues behind this locked operation;
    // do it here so the caller sees the final state.
    await this.onMonitorGone(id, live.conn);
  }

  kill(ref: string, signal = 'SIGKILL'): Promise<void> {
    const sig = parseSignal(signal);
    if (sig === undefined) throw invalid('signal', `"${signal}" is not a signal`);
    const c = this.resolve(ref);
    // Not behind the container's lock: a kill must reach a container while a stop waits
    // out its timeout, as docker's does. The monitor refuses a signal once the init is
    // reaped, so this cannot hit a recycled pid.
    return (async () => {
      const cur = this.get(c.id);
      assertCan('kill', cur.state, cur.name);
      const live = this.live.get(c.id);
      if (!live) throw new BerthError('MONITOR_LOST', `Container ${c.name} has no monitor`);
      // Signals that end a process by default are an operator stopping the container, as
      // with docker kill: the restart policy no longer applies. A SIGHUP to reload is not.
      const ends = sig === 9 || sig === 15 || sig === 2 || sig === 3;
      this.store.tx(() => {
        if (ends) this.store.containers.update(c.id, { stoppedByUser: true });
        this.events.append({
          type: 'container',
          action: 'kill',
          actorId: c.id,
          attributes: { ...this.attrs(c.config, c.name), signal: String(sig) },
        });
      });
      try {
        if (ends) await live.conn.request('hold');
        await live.conn.request(`kill ${sig}`);
      } catch (e) {
        // Between two runs there is no process; the hold has called the restart off.
        if (ends && cur.state === 'restarting') return;
        throw new BerthError(
          'CONTAINER_NOT_RUNNING',
          `Cannot kill container ${c.name}: ${errorMessage(e)}`,
        );
      }
    })();
  }

  async restart(ref: string, timeoutSec?: number): Promise<ContainerRecord> {
    const c = this.resolve(ref);
    await this.stop(c.id, timeoutSec);
    return this.start(c.id);
  }

  // ---- rename ----

  rename(ref: string, newName: string): Promise<void> {
    const name = newName.replace(/^\//, '');
    if (!NAME_PATTERN.test(name))
      throw invalid('name', `"${newName}" must match ${NAME_PATTERN.source}`);
    const c = this.resolve(ref);
    return this.mutex.run(c.id, async () => {
      const cur = this.get(c.id);
      if (cur.name === name) return;
      this.store.tx(() => {
        if (this.store.containers.byName(name))
          throw new BerthError(
            'CONTAINER_NAME_IN_USE',
            `Conflict: the container name "${name}" is already in use`,
            { field: 'name' },
          );
        this.store.containers.update(c.id, { name });
        this.events.append({
          type: 'container',
          action: 'rename',
          actorId: c.id,
          attributes: { ...this.attrs(cur.config, name), oldName: cur.name },
        });
      });
      await this.logs.renamed(c.id, name);
    });
  }

  // ---- remove ----

  remove(ref: string, force = false): Promise<void> {
    const c = this.resolve(ref);
    return this.mutex.run(c.id, async () => {
      const cur = this.get(c.id);
      if ((cur.state === 'running' || cur.state === 'restarting') && force) {
        await this.signalAndWait(c.id, 9, 10_000);
      } else {
        assertCan('remove', cur.state, cur.name);
      }
      await this.removeLocked(c.id);
    });
  }

  private async removeLocked(id: string): Promise<void> {
    const c = this.store.containers.get(id);
    if (!c) return;
    this.store.tx(() => this.store.containers.update(id, { state: 'removing' }));
    this.closePendingAttach(id);
    await this.cleanupRuntime(id);
    await this.network.disconnect(c);
    this.network.releasePorts(id);
    await rm(join(this.opts.dataRoot, 'containers', id), { recursive: true, force: true });
    await this.logs.retire(id);
    this.store.tx(() => {
      this.store.containers.delete(id);
      this.events.append({
        type: 'container',
        action: 'destroy',
        actorId: id,
        attributes: this.attrs(c.config, c.name),
      });
    });
    this.notify.emit(`removed:${id}`);
  }

  // ---- wait ----

  // Resolves with the exit code once the condition holds. Registered before the caller's
  // start, `next-exit` cannot miss a fast exit.
  async wait(
    ref: string,
    condition: WaitCondition = 'not-running',
    signal?: AbortSignal,
  ): Promise<{ exitCode: number; error: string }> {
    const c = this.resolve(ref);
    const result = () => {
      const cur = this.store.containers.get(c.id);
      return { exitCode: cur?.exitCode ?? c.exitCode, error: cur?.error ?? '' };
    };
    if (condition === 'not-running' && !isActive(this.get(c.id).state)) return result();
    const event = condition === 'removed' ? `removed:${c.id}` : `exit:${c.id}`;
    let last = result();
    const onExit = () => (last = result());
    this.notify.on(`exit:${c.id}`, onExit);
    try {
      await once(this.notify, event, signal ? { signal } : {});
    } finally {
      this.notify.off(`exit:${c.id}`, onExit);
    }
    return condition === 'removed' ? last : result();
  }

  // ---- attach ----

  // Attaches a client stream. Before the container runs the client waits in a queue and
  // is connected to the monitor before the process starts, so it sees all the output.
  async attach(ref: string, socket: Duplex, stdin: boolean): Promise<void> {
    const c = this.resolve(ref);
    assertCan('attach', c.state, c.name);
    const client: AttachClient = { socket, stdin };
    // Between two runs the monitor already takes clients for the next one.
    if ((c.state === 'running' || c.state === 'restarting') && this.live.has(c.id)) {
      await this.connectClient(c.id, client);
      return;
    }
    let set = this.pendingAttach.get(c.id);
    if (!set) this.pendingAttach.set(c.id, (set = new Set()));
    set.add(client);
    socket.once('close', () => set.delete(client));
  }

  private async flushPendingAttach(id: string): Promise<void> {
    const set = this.pendingAttach.get(id);
    if (!set) return;
    this.pendingAttach.delete(id);
    await Promise.all(
      [...set].map((cl) => this.connectClient(id, cl).catch(() => cl.socket.destroy())),
    );
  }

  private closePendingAttach(id: string): void {
    const set = this.pendingAttach.get(id);
    this.pendingAttach.delete(id);
    for (const cl of set ?? []) cl.socket.end();
  }

  private async connectClient(id: string, cl: AttachClient): Promise<void> {
    const m = await connectAttach(this.stateDir(id), cl.stdin);
    if (cl.socket.destroyed) {
      m.destroy();
      return;
    }
    m.pipe(cl.socket);
    const gone = () => {
      m.destroy();
      cl.socket.destroy();
    };
    if (cl.stdin) {
      // The client's end of input is the container's: half-close, keep the output coming.
      cl.socket.pipe(m);
    } else {
      cl.socket.resume();
      // A viewer's hang-up arrives as 'end' on a half-open socket, never as 'close'.
      cl.socket.once('end', gone);
    }
    cl.socket.once('close', gone);
    cl.socket.on('error', gone);
    m.on('error', gone);
  }

  async resize(ref: string, rows: number, cols: number): Promise<void> {
    const c = this.resolve(ref);
    assertCan('resize', c.state, c.name);
    const live = this.live.get(c.id);
    if (!live) throw new BerthError('MONITOR_LOST', `Container ${c.name} has no monitor`);
    await live.conn.request(`resize ${rows} ${cols}`).catch((e: unknown) => {
      throw new BerthError(
        'CONTAINER_NOT_RUNNING',
        `Cannot resize container ${c.name}: ${errorMessage(e)}`,
      );
    });
  }

  // Changes the limits of a container; a running one is updated in place through runc.
  update(ref: string, req: ResourcesRequest): Promise<ContainerRecord> {
    const c = this.resolve(ref);
    return this.mutex.run(c.id, async () => {
      const cur = this.get(c.id);
      const resources = checkResources(req, this.host, cur.config.resources ?? {});
      const linux = linuxResources(resources, this.opts.pidsLimit);
      if (cur.state === 'running') await this.runc.update(c.id, linux);
      // The monitor runs the next restart from this bundle: it must have the new limits.
      if (cur.state === 'running' || cur.state === 'restarting')
        await this.rewriteBundleResources(c.id, linux);
      return this.store.tx(() => {
        const r = this.store.containers.updateConfig(c.id, { ...cur.config, resources });
        this.events.append({
          type: 'container',
          action: 'update',
          actorId: c.id,
          attributes: this.attrs(cur.config, cur.name),
        });
        return r;
      });
    });
  }

  // Docker's `update --restart`: the policy is recorded and applies from the next start
  // (the monitor of a running container was launched with the old one); `no` also ends
  // the current monitor's restarts at once.
  setRestartPolicy(ref: string, req: RestartPolicyRequest): Promise<ContainerRecord> {
    const c = this.resolve(ref);
    return this.mutex.run(c.id, async () => {
      const cur = this.get(c.id);
      const old = cur.config.restart ?? NO_RESTART_POLICY;
      const restart = checkRestartPolicy({
        delayMs: old.delayMs,
        maxDelayMs: old.maxDelayMs,
        factor: old.factor,
        resetAfterMs: old.resetAfterMs,
        jitter: old.jitter,
        ...req,
      });
      if (restart.name !== 'no' && cur.config.autoRemove)
        throw invalid('restartPolicy', 'cannot be set on a container that is removed on exit');
      const live = this.live.get(c.id);
      if (restart.name === 'no' && live) await live.conn.request('hold').catch(() => undefined);
      return this.store.tx(() => {
        const r = this.store.containers.updateConfig(c.id, { ...cur.config, restart });
        this.events.append({
          type: 'container',
          action: 'update',
          actorId: c.id,
          attributes: this.attrs(cur.config, cur.name),
        });
        return r;
      });
    });
  }

  async monitorStats(id: string): Promise<Record<string, number> | undefined> {
    const live = this.live.get(id);
    if (!live) return undefined;
    try {
      return JSON.parse(await live.conn.request('stats')) as Record<string, number>;
    } catch {
      return undefined;
    }
  }

  // Host ports and the network address, for the views.
  netView(id: string): { bindings: PortBinding[]; attachment?: NetworkAttachment | undefined } {
    return this.network.view(id);
  }

  // The environment the container's init got (the image's, the container's, and what it
  // is told of its network), which an exec or a health probe inherits, as with docker.
  async initEnv(id: string): Promise<string[]> {
    try {
      const spec = JSON.parse(await readFile(join(this.stateDir(id), 'config.json'), 'utf8')) as {
        process?: { env?: string[] };
      };
      return (spec.process?.env ?? []).filter((e) => !e.startsWith('TERM='));
    } catch {
      return [];
    }
  }

  // Bytes a container has written where it may write: its writable root (while mounted)
  // and its tmpfs mounts (memory, but the container's to fill), read from inside its
  // mount namespace through /proc/PID/root.
  async diskUsage(c: ContainerRecord): Promise<{ writableBytes: number; tmpfsBytes: number }> {
    const writableBytes = c.config.writable ? ((await writableUsage(this.writable(c.id))) ?? 0) : 0;
    let tmpfsBytes = 0;
    if (c.state === 'running' && c.pid > 0) {
      const mounts = c.config.mounts ?? [];
      const paths = [
        ...defaultTmpfs(this.opts.tmpfs, undefined, mounts).map((t) => t.path),
        ...(mounts.some((m) => m.target === '/dev/shm') ? [] : ['/dev/shm']),
        ...mounts.filter((m) => m.type === 'tmpfs').map((m) => m.target),
      ];
      for (const p of paths) {
        try {
          const s = await statfs(`/proc/${c.pid}/root${p}`);
          tmpfsBytes += (s.blocks - s.bfree) * s.bsize;
        } catch {
          /* exited meanwhile */
        }
      }
    }
    return { writableBytes, tmpfsBytes };
  }

  async pids(ref: string): Promise<number[]> {
    const c = this.resolve(ref);
    assertCan('top', c.state, c.name);
    return this.runc.pids(c.id);
  }

  // ---- adoption ----

  // Re-adopts every container after berthd starts: running ones stay running and are
  // controllable again, ones that exited while berthd was down get their real exit, and
  // what an interrupted operation left behind is cleaned up.
  async reconcile(): Promise<{ adopted: number; exited: number; cleaned: number }> {
    let done = () => {};
    this.reconciled = new Promise<void>((resolve) => (done = resolve));
    try {
      return await this.reconcileAll();
    } finally {
      done();
    }
  }

  // Resolved once reconcile has finished (at once if it never ran).
  private reconciled: Promise<void> = Promise.resolve();

  private async reconcileAll(): Promise<{ adopted: number; exited: number; cleaned: number }> {
    let adopted = 0;
    let exited = 0;
    let cleaned = 0;
    const known = new Set<string>();
    for (const c of this.store.containers.list()) {
      known.add(c.id);
      // One container that cannot be reconciled must not keep berthd from serving the rest.
      await this.mutex
        .run(c.id, async () => {
          const r = await this.reconcileOne(c);
          if (r === 'adopted') adopted++;
          else if (r === 'exited') exited++;
          else if (r === 'cleaned') cleaned++;
        })
        .catch((e: unknown) =>
          this.log.error({ id: c.id, err: errorMessage(e) }, 'reconcile failed'),
        );
    }
    // State dirs and runc containers without a row: a create or remove cut short by a crash.
    const orphans = new Set<string>();
    for (const dir of [join(this.opts.runRoot, 'c'), join(this.opts.runRoot, 'mnt')])
      for (const id of await readdir(dir).catch(() => [] as string[]))
        if (ID_PATTERN.test(id) && !known.has(id)) orphans.add(id);
    for (const id of orphans) {
      await this.cleanupRuntime(id);
      cleaned++;
    }
    for (const id of await readdir(join(this.opts.dataRoot, 'containers')).catch(
      () => [] as string[],
    ))
      if (ID_PATTERN.test(id) && !known.has(id))
        await rm(join(this.opts.dataRoot, 'containers', id), { recursive: true, force: true });
    for (const r of await this.runc.list()) {
      if (!known.has(r.id)) {
        await this.runc.delete(r.id).catch(() => undefined);
        this.cgroups.removeContainer(this.cgroupsPath(r.id));
        cleaned++;
      }
    }
    // Network namespaces, leases, port rules of containers that no longer run (a crash
    // mid-start, a reboot), and host ports of containers that no longer exist.
    cleaned += await this.network.sweep((id) => {
      const c = this.store.containers.get(id);
      return c !== undefined && (c.state === 'running' || c.state === 'restarting');
    });
    return { adopted, exited, cleaned };
  }

  private monitorAlive(c: ContainerRecord): boolean {
    return processMatches(c.monitorPid, ['berth-monitor', c.id]);
  }

  private async reconcileOne(
    c: ContainerRecord,
  ): Promise<'adopted' | 'exited' | 'cleaned' | 'none'> {
    const id = c.id;
    switch (c.state) {
      case 'created':
        return 'none';
      case 'exited':
        // Docker's rule at daemon start: `always` comes back (even if it was stopped),
        // `unless-stopped` unless it was stopped.
        this.restartIfPolicy(id, 'daemon-start');
        return 'none';
      case 'removing':
        await this.removeLocked(id);
        return 'cleaned';
      case 'starting': {
        // Cut short between launching the monitor and recording it. The monitor may still
        // be in `runc create`: stop it first, or it would create the container after our
        // cleanup. Then start over cleanly.
        for (const pid of findProcesses(['berth-monitor', id])) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        await waitUntil(() => findProcesses(['berth-monitor', id]).length === 0, 5000);
        await this.cleanupRuntime(id);
        this.store.tx(() =>
          this.store.containers.update(id, {
            state: 'created',
            error: 'start interrupted by a berthd restart',
            pid: 0,
            monitorPid: 0,
          }),
        );
        return 'cleaned';
      }
      case 'running':
      case 'restarting':
      case 'stopping': {
        const exit = await readExitRecord(this.stateDir(id));
        let conn: MonitorConnection | undefined;
        if (!exit && this.monitorAlive(c)) {
          conn = await MonitorConnection.connect(this.stateDir(id)).catch((e: unknown) => {
            this.log.warn({ id, err: errorMessage(e) }, 'monitor alive but unreachable');
            return undefined;
          });
        }
        if (!conn) {
          // Its exit record may have appeared while we looked: read it once more.
          await this.recordExit(c, exit ?? (await readExitRecord(this.stateDir(id))));
          return 'exited';
        }
        this.track(id, conn);
        this.store.tx(() =>
          this.events.append({
            type: 'container',
            action: 'adopt',
            actorId: id,
            attributes: this.attrs(c.config, c.name),
          }),
        );
        this.ingestSoon(id);
        this.watchHealth(c);
        // A start that was recorded but not yet sent when berthd died.
        await conn.request('start').catch(() => undefined);
        return 'adopted';
      }
    }
  }

  // ---- health ----

  private watchHealth(c: ContainerRecord): void {
    const hc = c.config.healthcheck;
    if (!hc || (c.state !== 'running' && c.state !== 'stopping')) return;
    this.health.watch(c.id, hc, Date.parse(c.startedAt) || Date.now(), c.health);
  }

  private unwatchHealth(id: string): void {
    this.health.unwatch(id);
  }

  // A probe runs as the container's user, with its environment, like docker's.
  private async probe(
    id: string,
    argv: readonly string[],
    timeoutMs: number,
  ): Promise<{ exitCode: number; output: string }> {
    const c = this.get(id);
    const user = await resolveUser(await this.images.root(c.config.imageId), c.config.user);
    const proc = buildProcess({
      args: [...argv],
      env: mergeEnv(
        [`HOSTNAME=${c.config.hostname}`, `HOME=${user.home}`, ...(await this.initEnv(id))],
        c.config.env,
      ),
      cwd: c.config.workdir,
      uid: user.uid,
      gid: user.gid,
      additionalGids: user.additionalGids,
      terminal: false,
      nofileLimit: this.nofile,
      ulimits: c.config.resources?.ulimits,
      ...processSecurity(c.config),
    });
    return runProbe(this.runc, id, proc, timeoutMs);
  }

  private recordHealth(id: string, state: HealthState, changed: boolean): void {
    const c = this.store.containers.get(id);
    if (!c || (c.state !== 'running' && c.state !== 'stopping')) return;
    this.store.tx(() => {
      this.store.containers.update(id, { health: state });
      if (changed)
        this.events.append({
          type: 'container',
          action: 'health_status',
          actorId: id,
          attributes: { ...this.attrs(c.config, c.name), healthStatus: state.status },
        });
    });
  }

  private onUnhealthy(id: string): void {
    const c = this.store.containers.get(id);
    const action = c?.config.healthcheck?.onFailure ?? 'none';
    if (!c || action === 'none' || c.state !== 'running') return;
    this.log.warn({ id, action }, 'container unhealthy');
    const act = async () => {
      const live = this.live.get(id);
      if (!live) return;
      this.store.tx(() =>
        this.events.append({
          type: 'container',
          action: 'health-action',
          actorId: id,
          attributes: { ...this.attrs(c.config, c.name), action },
        }),
      );
      if (action === 'stop') {
        await this.stop(id);
      } else if (action === 'kill') {
        // The restart policy applies, as to any death.
        await live.conn.request('kill 9');
      } else {
        // Restart whatever the policy: the monitor runs it again after the stop.
        await live.conn.request('force-restart health');
        const pid = c.pid;
        await live.conn.request(`kill ${parseSignal(c.config.stopSignal) ?? 15}`);
        setTimeout(() => {
          const cur = this.store.containers.get(id);
          if (cur?.state === 'running' && cur.pid === pid)
            void live.conn.request('kill 9').catch(() => undefined);
        }, c.config.stopTimeout * 1000).unref();
      }
    };
    act().catch((e: unknown) =>
      this.log.warn({ id, err: errorMessage(e) }, 'acting on an unhealthy container failed'),
    );
  }

  // berthd shuts down: drop our connections, leave every container and monitor running.
  detachAll(): void {
    this.health.stopAll();
    for (const [id, l] of this.live) {
      this.live.delete(id);
      l.conn.close();
    }
  }

  private get(id: string): ContainerRecord {
    const c = this.store.containers.get(id);
    if (!c) throw new BerthError('CONTAINER_NOT_FOUND', `No such container: ${id}`);
    return c;
  }
}

function isActive(s: ContainerState): boolean {
  return s === 'running' || s === 'starting' || s === 'stopping';
}

async function waitUntil(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await delay(20);
}

// Referenced: at start-up, before the API listens, a pending delay is all that keeps the
// process alive (an unref'd one let berthd exit in the middle of reconciling).
function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
