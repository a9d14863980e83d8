// The container lifecycle. Every state change is committed to the store (with its event)
// before it is acted on or announced; containers live under their own monitors, never as
// berthd's children.
import { EventEmitter, once } from 'node:events';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Cgroups } from '../cgroups/index.ts';
import { resolveUser } from '../images/users.ts';
import { writeEtcFiles } from '../network/etc-files.ts';
import {
  connectAttach,
  launchMonitor,
  MonitorConnection,
  readExitRecord,
  readMonitorEvents,
  type ExitRecord,
} from '../runtime/monitor.ts';
import type { Runc } from '../runtime/runc.ts';
import { buildSpec, linuxResources, type TmpfsMount } from '../runtime/spec.ts';
import type { Store } from '../store/index.ts';
import type { CreateContainerRequest, ResourcesRequest, WaitCondition } from '../types/api.ts';
import type {
  ContainerConfig,
  ContainerRecord,
  ContainerState,
  NetworkMode,
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

export interface ContainerEngineOptions {
  readonly dataRoot: string;
  readonly runRoot: string;
  readonly monitorBinary: string;
  readonly cgroupParent: string;
  readonly pidsLimit: number;
  readonly tmpfs: readonly TmpfsMount[];
  readonly shmSizeBytes: number;
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

function mergeEnv(base: readonly string[], over: readonly string[]): string[] {
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
  private monitorCgroupProcs: string[] = [];

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
  }

  init(): void {
    this.monitorCgroupProcs = this.cgroups.ensureMonitorGroup(`${this.opts.cgroupParent}.monitors`);
  }

  stateDir(id: string): string {
    return join(this.opts.runRoot, 'c', id);
  }

  logPath(id: string): string {
    return this.logs.livePath(id);
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
    const image = this.images.resolve(req.image);
    if (req.name !== undefined && !NAME_PATTERN.test(req.name.replace(/^\//, ''))) {
      throw invalid('name', `"${req.name}" must match ${NAME_PATTERN.source}`);
    }
    for (const e of req.env ?? []) {
      if (!e || e.startsWith('=')) throw invalid('env', `"${e}" is not KEY=VALUE`);
    }
    const networkMode = (req.networkMode ?? 'none') as NetworkMode;
    if (networkMode !== 'none' && networkMode !== 'host') {
      throw invalid('networkMode', `"${req.networkMode}" is not supported (none, host)`);
    }
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
    const user = req.user ?? image.config.user;
    await resolveUser(this.images.rootfs(image.id), user); // fail at create, not at start

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
      stopSignal,
      stopTimeout: req.stopTimeout ?? 10,
      log,
      resources,
      ...(req.tty && req.consoleSize ? { consoleSize: req.consoleSize } : {}),
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
      this.store.containers.insert({ ...rec, name });
      this.events.append({
        type: 'container',
        action: 'create',
        actorId: id,
        attributes: this.attrs(config, name),
      });
      return { ...rec, name };
    });
  }

  private attrs(config: ContainerConfig, name: string): Record<string, string> {
    return { ...config.labels, name, image: config.image };
  }

  // ---- start ----

  start(ref: string): Promise<ContainerRecord> {
    const c = this.resolve(ref);
    return this.mutex.run(c.id, () => this.startLocked(c.id));
  }

  private async startLocked(id: string): Promise<ContainerRecord> {
    const c = this.get(id);
    if (c.state === 'running') return c;
    assertCan('start', c.state, c.name);
    const prev = c.state;
    this.store.tx(() =>
      // A start makes a new state dir, so the monitor's event file starts over.
      this.store.containers.update(id, {
        state: 'starting',
        error: '',
        stoppedByUser: false,
        eventsOffset: 0,
        oomKills: 0,
      }),
    );
    const stateDir = this.stateDir(id);
    let conn: MonitorConnection | undefined;
    try {
      const bundle = await this.writeBundle(c);
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
        cgroupProcs: this.monitorCgroupProcs,
        terminal: c.config.tty,
        stdin: c.config.openStdin,
        logMaxSize: c.config.log.maxSize,
        logMaxFiles: c.config.log.maxFiles,
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
            action: 'start',
            actorId: id,
            attributes: this.attrs(c.config, c.name),
          },
          startedAt,
        );
        return r;
      });
      this.track(id, conn);
      await this.flushPendingAttach(id);
      await conn.request('start');
      return running;
    } catch (e) {
      conn?.close();
      this.live.delete(id);
      await this.cleanupRuntime(id);
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

  private async writeBundle(c: ContainerRecord): Promise<string> {
    const dir = this.stateDir(c.id);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const rootfs = this.images.rootfs(c.config.imageId);
    const user = await resolveUser(rootfs, c.config.user);
    const etc = await writeEtcFiles(dir, c.config.hostname, c.config.networkMode);
    const env = mergeEnv(
      [
        `HOSTNAME=${c.config.hostname}`,
        `HOME=${user.home}`,
        ...(c.config.tty ? ['TERM=xterm'] : []),
      ],
      c.config.env,
    );
    const spec = buildSpec({
      rootfs,
      readonlyRootfs: true,
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
      tmpfs: this.opts.tmpfs,
      shmSizeBytes: this.opts.shmSizeBytes,
      consoleSize: c.config.consoleSize,
      resources: c.config.resources,
    });
    await writeFile(join(dir, 'config.json'), JSON.stringify(spec));
    return dir;
  }

  // Removes what a start made: runc state (and so the cgroups), the state dir. Idempotent.
  private async cleanupRuntime(id: string): Promise<void> {
    await this.runc
      .delete(id)
      .catch((e: unknown) => this.log.warn({ id, err: errorMessage(e) }, 'runc delete failed'));
    const left = this.cgroups.removeContainer(this.cgroupsPath(id));
    if (left.length > 0) this.log.warn({ id, left }, 'cgroup directories still busy');
    await rm(this.stateDir(id), { recursive: true, force: true });
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
      // The monitor died without an exit record (killed by an operator, or crashed). Never
      // show such a container as running: kill the orphan and say what happened. Recovery
      // by restart policy arrives with the restart issue.
      this.log.error({ id }, 'monitor lost; stopping the orphaned container');
      await this.cleanupRuntime(id);
    } else {
      await this.ingestSerial(id);
    }
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
      });
      if (!exit) {
        this.events.append({
          type: 'container',
          action: 'monitor-lost',
          actorId: id,
          attributes: this.attrs(c.config, c.name),
        });
      }
      this.events.append(
        {
          type: 'container',
          action: 'die',
          actorId: id,
          attributes: {
            ...this.attrs(c.config, c.name),
            exitCode: String(exitCode),
            oomKilled: String(exit?.oomKilled ?? false),
          },
        },
        finishedAt,
      );
    });
    await rm(this.stateDir(id), { recursive: true, force: true });
    this.closePendingAttach(id);
    this.notify.emit(`exit:${id}`);
    if (c.config.autoRemove)
      await this.removeLocked(id).catch((e: unknown) =>
        this.log.error({ id, err: errorMessage(e) }, 'auto-remove failed'),
      );
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
    let dropped = 0;
    let oomKills = c.oomKills;
    this.store.tx(() => {
      for (const e of events) {
        const { type, time, ...rest } = e;
        if (type === 'log-rotated') rotated = true;
        if (type === 'log-dropped') dropped += Number(rest['bytes']) || 0;
        if (type === 'oom') oomKills = Math.max(oomKills, Number(rest['oomKills']) || 0);
        const attributes: Record<string, string> = { ...this.attrs(c.config, c.name) };
        for (const [k, v] of Object.entries(rest)) attributes[k] = String(v);
        const at = new Date(time);
        this.events.append(
          { type: 'container', action: type, actorId: id, attributes },
          Number.isNaN(at.getTime()) ? new Date() : at,
        );
      }
      this.store.containers.update(id, {
        eventsOffset: offset,
        logDroppedBytes: c.logDroppedBytes + dropped,
        oomKills,
      });
    });
    if (rotated) this.logs.onRotated(id, c.config.log);
    return true;
  }

  // ---- stop / kill ----

  stop(ref: string, timeoutSec?: number): Promise<boolean> {
    const c = this.resolve(ref);
    return this.mutex.run(c.id, async () => {
      const cur = this.get(c.id);
      if (cur.state !== 'running') return false;
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

  // Sends sig, waits up to ms for the exit, then SIGKILL and waits again.
  private async signalAndWait(id: string, sig: number, ms: number): Promise<void> {
    const live = this.live.get(id);
    if (!live) return;
    const exited = live.conn.closed;
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
      this.store.tx(() => {
        if (sig === 9 || sig === 15) this.store.containers.update(c.id, { stoppedByUser: true });
        this.events.append({
          type: 'container',
          action: 'kill',
          actorId: c.id,
          attributes: { ...this.attrs(c.config, c.name), signal: String(sig) },
        });
      });
      try {
        await live.conn.request(`kill ${sig}`);
      } catch (e) {
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

  // ---- remove ----

  remove(ref: string, force = false): Promise<void> {
    const c = this.resolve(ref);
    return this.mutex.run(c.id, async () => {
      const cur = this.get(c.id);
      if (cur.state === 'running' && force) {
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
    if (c.state === 'running' && this.live.has(c.id)) {
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
      if (cur.state === 'running')
        await this.runc.update(c.id, linuxResources(resources, this.opts.pidsLimit));
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

  async monitorStats(id: string): Promise<Record<string, number> | undefined> {
    const live = this.live.get(id);
    if (!live) return undefined;
    try {
      return JSON.parse(await live.conn.request('stats')) as Record<string, number>;
    } catch {
      return undefined;
    }
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
    for (const id of await readdir(join(this.opts.runRoot, 'c')).catch(() => [] as string[])) {
      if (ID_PATTERN.test(id) && !known.has(id)) {
        await this.cleanupRuntime(id);
        cleaned++;
      }
    }
    for (const r of await this.runc.list()) {
      if (!known.has(r.id)) {
        await this.runc.delete(r.id).catch(() => undefined);
        this.cgroups.removeContainer(this.cgroupsPath(r.id));
        cleaned++;
      }
    }
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
      case 'exited':
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
        // A start that was recorded but not yet sent when berthd died.
        await conn.request('start').catch(() => undefined);
        return 'adopted';
      }
    }
  }

  // berthd shuts down: drop our connections, leave every container and monitor running.
  detachAll(): void {
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
