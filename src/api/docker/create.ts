// Docker's container create body (Config, HostConfig, NetworkingConfig) as berth's create
// request. Docker's defaults where they differ from berth's native CLI: a writable root
// unless ReadonlyRootfs (berth's bounded writable layer), bridge networking. What berth
// cannot honour is refused with a 400 that names the field, never silently dropped when it
// would change what the container does. docs/docker-api.md has the whole table.
import type {
  CreateContainerRequest,
  DeviceRequest,
  HealthcheckRequest,
  MountRequest,
  ResourcesRequest,
} from '../../types/api.ts';
import type { PortRequest } from '../../types/ports.ts';
import { invalid } from '../../util/errors.ts';
import { parseSize } from '../../util/size.ts';

type Obj = Record<string, unknown>;

export interface DockerCreate {
  readonly req: CreateContainerRequest;
  // Anonymous volumes (Config.Volumes, a volume mount without a source): made by the
  // caller before the create, under these names, and removed with the container's `rm -v`.
  readonly anonymousVolumes: readonly string[];
}

export const ANONYMOUS_LABEL = 'com.docker.volume.anonymous';

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function obj(v: unknown, field: string): Obj | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) throw invalid(field, 'must be an object');
  return v;
}

function str(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalid(field, 'must be a string');
  return v;
}

function bool(v: unknown, field: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw invalid(field, 'must be true or false');
  return v;
}

function num(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid(field, 'must be a number');
  return v;
}

function int(v: unknown, field: string): number | undefined {
  const n = num(v, field);
  if (n !== undefined && !Number.isSafeInteger(n)) throw invalid(field, 'must be a whole number');
  return n;
}

function strList(v: unknown, field: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
    throw invalid(field, 'must be a list of strings');
  return v as string[];
}

// Docker's StrSlice: a list, or one string.
function strSlice(v: unknown, field: string): string[] | undefined {
  if (typeof v === 'string') return [v];
  return strList(v, field);
}

function strMap(v: unknown, field: string): Record<string, string> | undefined {
  const o = obj(v, field);
  if (!o) return undefined;
  for (const [k, x] of Object.entries(o))
    if (typeof x !== 'string') throw invalid(`${field}.${k}`, 'must be a string');
  return o as Record<string, string>;
}

// A field berth cannot honour: refused unless it has its zero value.
function refuseSet(v: unknown, field: string, why: string, zero: readonly unknown[] = []): void {
  if (v === undefined || v === null || v === '' || v === 0 || v === false) return;
  if (Array.isArray(v) && v.length === 0) return;
  if (isObj(v) && Object.keys(v).length === 0) return;
  if (zero.includes(v)) return;
  throw invalid(field, `${JSON.stringify(v).slice(0, 80)} is not supported: ${why}`);
}

const nsToMs = (ns: number | undefined): number | undefined =>
  ns === undefined || ns === 0 ? undefined : Math.max(1, Math.round(ns / 1e6));

function parsePortKey(k: string, field: string): { port: number; proto: 'tcp' | 'udp' } {
  const m = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(k);
  const port = Number(m?.[1]);
  if (!m || port < 1 || port > 65535) throw invalid(field, `"${k}" is not PORT/PROTOCOL`);
  const proto = (m[2] ?? 'tcp').toLowerCase();
  if (proto !== 'tcp' && proto !== 'udp') throw invalid(field, `"${k}": only tcp and udp`);
  return { port, proto };
}

function portBindings(v: unknown, exposed: readonly string[], publishAll: boolean): PortRequest[] {
  const out: PortRequest[] = [];
  const bound = new Set<string>();
  const pb = obj(v, 'HostConfig.PortBindings') ?? {};
  for (const [k, list] of Object.entries(pb)) {
    const f = `HostConfig.PortBindings.${k}`;
    const { port, proto } = parsePortKey(k, f);
    bound.add(`${port}/${proto}`);
    if (list === null) continue;
    if (!Array.isArray(list)) throw invalid(f, 'must be a list of {HostIp, HostPort}');
    for (const b of list as unknown[]) {
      const e = obj(b, f) ?? {};
      const ip = str(e['HostIp'], `${f}.HostIp`) ?? '';
      const hp = str(e['HostPort'], `${f}.HostPort`) ?? '';
      const r: PortRequest = { containerPort: port, protocol: proto, hostIP: ip };
      if (hp !== '' && hp !== '0') {
        const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(hp);
        if (!m) throw invalid(`${f}.HostPort`, `"${hp}" is not a port or a range`);
        r.hostPort = Number(m[1]);
        if (m[2] !== undefined) r.hostPortEnd = Number(m[2]);
      }
      out.push(r);
    }
  }
  // -P: every exposed port not bound above, on a port berthd picks (the image's exposed
  // ports are the engine's publishAll).
  if (publishAll)
    for (const k of exposed) {
      const { port, proto } = parsePortKey(k, 'ExposedPorts');
      if (bound.has(`${port}/${proto}`)) continue;
      bound.add(`${port}/${proto}`);
      out.push({ containerPort: port, protocol: proto, hostIP: '' });
    }
  return out;
}

const MOUNT_FLAGS = new Set(['noexec', 'nosuid', 'nodev', 'exec', 'suid', 'dev']);
const BIND_NOOPS = new Set([
  'z',
  'Z',
  'nocopy',
  'private',
  'rprivate',
  'consistent',
  'cached',
  'delegated',
]);

// -v SOURCE:TARGET[:OPTIONS] as dockerd reads HostConfig.Binds.
function parseBind(b: string, i: number): MountRequest {
  const f = `HostConfig.Binds[${i}]`;
  const parts = b.split(':');
  if (parts.length < 2 || parts.length > 3)
    throw invalid(f, `"${b}" is not SOURCE:TARGET[:OPTIONS]`);
  const [source = '', target = '', opts = ''] = parts;
  if (!source) throw invalid(f, `"${b}" has no source`);
  const m: MountRequest = {
    type: source.startsWith('/') ? 'bind' : 'volume',
    source,
    target,
    // dockerd makes a missing host directory for -v (not for --mount).
    createHostPath: true,
  };
  const flags: string[] = [];
  for (const o of opts ? opts.split(',') : []) {
    if (o === 'ro') m.readOnly = true;
    else if (o === 'rw') m.readOnly = false;
    // SELinux relabelling, copy-up and private propagation: nothing to do here.
    else if (BIND_NOOPS.has(o)) continue;
    else if (MOUNT_FLAGS.has(o)) flags.push(o);
    else
      throw invalid(
        f,
        `option "${o}" of "${b}" is not supported (ro, rw, z, Z, nocopy, noexec, nosuid, nodev)`,
      );
  }
  if (flags.length > 0) m.options = flags;
  return m;
}

// HostConfig.Mounts entries.
function parseMount(v: unknown, i: number, anonymous: () => string): MountRequest {
  const f = `HostConfig.Mounts[${i}]`;
  const o = obj(v, f) ?? {};
  const type = str(o['Type'], `${f}.Type`) ?? 'volume';
  if (type !== 'bind' && type !== 'volume' && type !== 'tmpfs')
    throw invalid(`${f}.Type`, `"${type}" is not supported (bind, volume, tmpfs)`);
  const target = str(o['Target'], `${f}.Target`) ?? '';
  let source = str(o['Source'], `${f}.Source`) ?? '';
  const m: MountRequest = { type, target };
  if (type === 'volume' && source === '') source = anonymous();
  if (source !== '') m.source = source;
  const ro = bool(o['ReadOnly'], `${f}.ReadOnly`);
  if (ro !== undefined) m.readOnly = ro;
  const bo = obj(o['BindOptions'], `${f}.BindOptions`);
  if (bo) {
    const prop = str(bo['Propagation'], `${f}.BindOptions.Propagation`) ?? '';
    if (prop !== '' && prop !== 'private' && prop !== 'rprivate')
      throw invalid(`${f}.BindOptions.Propagation`, `"${prop}" is not supported (private only)`);
    if (bool(bo['CreateMountpoint'], `${f}.BindOptions.CreateMountpoint`)) m.createHostPath = true;
  }
  const vo = obj(o['VolumeOptions'], `${f}.VolumeOptions`);
  if (vo) {
    const dc = obj(vo['DriverConfig'], `${f}.VolumeOptions.DriverConfig`);
    const driver = str(dc?.['Name'], `${f}.VolumeOptions.DriverConfig.Name`) ?? '';
    if (driver !== '' && driver !== 'local')
      throw invalid(
        `${f}.VolumeOptions.DriverConfig.Name`,
        `volume driver "${driver}" is not supported`,
      );
  }
  const to = obj(o['TmpfsOptions'], `${f}.TmpfsOptions`);
  if (to) {
    const size = int(to['SizeBytes'], `${f}.TmpfsOptions.SizeBytes`);
    if (size) m.sizeBytes = size;
    const mode = int(to['Mode'], `${f}.TmpfsOptions.Mode`);
    if (mode) m.mode = (mode & 0o7777).toString(8).padStart(3, '0');
  }
  return m;
}

// HostConfig.Tmpfs: {"/run": "rw,noexec,size=65536k"}.
function parseTmpfs(target: string, opts: string): MountRequest {
  const f = `HostConfig.Tmpfs.${target}`;
  const m: MountRequest = { type: 'tmpfs', target };
  const flags: string[] = [];
  for (const o of opts ? opts.split(',') : []) {
    if (o === '') continue;
    if (o.startsWith('size=')) m.sizeBytes = parseSize(o.slice(5), f);
    else if (o.startsWith('mode=')) m.mode = o.slice(5);
    else if (o === 'ro') m.readOnly = true;
    else if (o === 'rw') m.readOnly = false;
    else if (MOUNT_FLAGS.has(o)) flags.push(o);
    else
      throw invalid(
        f,
        `option "${o}" is not supported (size=, mode=, ro, rw, [no]exec, [no]suid, [no]dev)`,
      );
  }
  if (flags.length > 0) m.options = flags;
  return m;
}

function healthcheck(v: unknown): HealthcheckRequest | undefined {
  const h = obj(v, 'Healthcheck');
  if (!h) return undefined;
  const r: HealthcheckRequest = {};
  const test = strSlice(h['Test'], 'Healthcheck.Test');
  if (test && test.length > 0) r.test = test;
  const interval = nsToMs(int(h['Interval'], 'Healthcheck.Interval'));
  if (interval !== undefined) r.intervalMs = interval;
  const timeout = nsToMs(int(h['Timeout'], 'Healthcheck.Timeout'));
  if (timeout !== undefined) r.timeoutMs = timeout;
  const start = nsToMs(int(h['StartPeriod'], 'Healthcheck.StartPeriod'));
  if (start !== undefined) r.startPeriodMs = start;
  const retries = int(h['Retries'], 'Healthcheck.Retries');
  if (retries) r.retries = retries;
  return Object.keys(r).length > 0 ? r : undefined;
}

function resources(hc: Obj): ResourcesRequest | undefined {
  const r: ResourcesRequest = {};
  const memory = int(hc['Memory'], 'HostConfig.Memory');
  if (memory) r.memory = memory;
  const reservation = int(hc['MemoryReservation'], 'HostConfig.MemoryReservation');
  if (reservation) r.memoryReservation = reservation;
  const swap = int(hc['MemorySwap'], 'HostConfig.MemorySwap');
  if (swap) r.memorySwap = swap;
  const nano = int(hc['NanoCpus'], 'HostConfig.NanoCpus');
  const quota = int(hc['CpuQuota'], 'HostConfig.CpuQuota');
  const period = int(hc['CpuPeriod'], 'HostConfig.CpuPeriod');
  if (nano && (quota || period))
    throw invalid('HostConfig.NanoCpus', 'conflicts with CpuQuota and CpuPeriod: give one');
  if (nano) r.cpus = nano / 1e9;
  else if (quota && quota > 0) r.cpus = quota / (period || 100_000);
  const shares = int(hc['CpuShares'], 'HostConfig.CpuShares');
  if (shares) r.cpuShares = shares;
  const cpuset = str(hc['CpusetCpus'], 'HostConfig.CpusetCpus');
  if (cpuset) r.cpusetCpus = cpuset;
  const pids = int(hc['PidsLimit'], 'HostConfig.PidsLimit');
  if (pids) r.pidsLimit = pids;
  const blkio = int(hc['BlkioWeight'], 'HostConfig.BlkioWeight');
  if (blkio) r.blkioWeight = blkio;
  const ul = hc['Ulimits'];
  if (ul !== undefined && ul !== null) {
    if (!Array.isArray(ul)) throw invalid('HostConfig.Ulimits', 'must be a list');
    if (ul.length > 0)
      r.ulimits = (ul as unknown[]).map((u, i) => {
        const o = obj(u, `HostConfig.Ulimits[${i}]`) ?? {};
        return {
          name: str(o['Name'], `HostConfig.Ulimits[${i}].Name`) ?? '',
          soft: int(o['Soft'], `HostConfig.Ulimits[${i}].Soft`) ?? 0,
          hard: int(o['Hard'], `HostConfig.Ulimits[${i}].Hard`) ?? 0,
        };
      });
  }
  return Object.keys(r).length > 0 ? r : undefined;
}

// The update body (docker update): resources only, and the restart policy apart.
export function dockerUpdateResources(body: unknown): ResourcesRequest {
  const b = obj(body, 'body') ?? {};
  for (const k of ['KernelMemory', 'KernelMemoryTCP', 'CpuRealtimePeriod', 'CpuRealtimeRuntime'])
    refuseSet(b[k], k, 'berth does not set it');
  refuseSet(b['CpusetMems'], 'CpusetMems', 'berth does not set it');
  return resources(b) ?? {};
}

export function dockerRestartPolicy(
  v: unknown,
  field = 'HostConfig.RestartPolicy',
): { name: string; maximumRetryCount?: number } | undefined {
  const rp = obj(v, field);
  if (!rp) return undefined;
  const name = str(rp['Name'], `${field}.Name`) ?? '';
  const max = int(rp['MaximumRetryCount'], `${field}.MaximumRetryCount`);
  return { name: name === '' ? 'no' : name, ...(max ? { maximumRetryCount: max } : {}) };
}

function logOpts(v: unknown): Record<string, string> | undefined {
  const lc = obj(v, 'HostConfig.LogConfig');
  if (!lc) return undefined;
  const type = str(lc['Type'], 'HostConfig.LogConfig.Type') ?? '';
  if (!['', 'json-file', 'local', 'berth-monitor', 'k8s-file'].includes(type))
    throw invalid(
      'HostConfig.LogConfig.Type',
      `log driver "${type}" is not supported: berth's monitor writes every container's bounded log (json-file and local take max-size, max-file, compress)`,
    );
  const cfg = strMap(lc['Config'], 'HostConfig.LogConfig.Config') ?? {};
  return Object.keys(cfg).length > 0 ? { ...cfg } : undefined;
}

function devices(v: unknown): DeviceRequest[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw invalid('HostConfig.Devices', 'must be a list');
  if (v.length === 0) return undefined;
  return (v as unknown[]).map((d, i) => {
    const f = `HostConfig.Devices[${i}]`;
    const o = obj(d, f) ?? {};
    const r: DeviceRequest = { pathOnHost: str(o['PathOnHost'], `${f}.PathOnHost`) ?? '' };
    const inC = str(o['PathInContainer'], `${f}.PathInContainer`);
    if (inC) r.pathInContainer = inC;
    const perms = str(o['CgroupPermissions'], `${f}.CgroupPermissions`);
    if (perms) r.cgroupPermissions = perms;
    return r;
  });
}

// NetworkMode, or the one network NetworkingConfig names (docker-compose's way).
function networkMode(hc: Obj, body: Obj): string {
  const mode = str(hc['NetworkMode'], 'HostConfig.NetworkMode') ?? '';
  const nc = obj(body['NetworkingConfig'], 'NetworkingConfig');
  const eps = obj(nc?.['EndpointsConfig'], 'NetworkingConfig.EndpointsConfig') ?? {};
  const names = Object.keys(eps);
  if (names.length > 1)
    throw invalid(
      'NetworkingConfig.EndpointsConfig',
      'a container joins one network at create (connect others later)',
    );
  for (const [n, ep] of Object.entries(eps)) {
    const e = obj(ep, `NetworkingConfig.EndpointsConfig.${n}`) ?? {};
    const ipam = obj(e['IPAMConfig'], `NetworkingConfig.EndpointsConfig.${n}.IPAMConfig`) ?? {};
    refuseSet(
      ipam['IPv4Address'],
      `NetworkingConfig.EndpointsConfig.${n}.IPAMConfig.IPv4Address`,
      'addresses are assigned by berth',
    );
    refuseSet(
      ipam['IPv6Address'],
      `NetworkingConfig.EndpointsConfig.${n}.IPAMConfig.IPv6Address`,
      'no IPv6 on berth networks',
    );
  }
  if ((mode === '' || mode === 'default') && names[0] !== undefined) return names[0];
  if (mode !== '' && mode !== 'default' && names[0] !== undefined && names[0] !== mode)
    throw invalid(
      'NetworkingConfig.EndpointsConfig',
      `names ${names[0]}, but NetworkMode is ${mode}`,
    );
  return mode === '' || mode === 'default' ? 'bridge' : mode;
}

export function fromDockerCreate(
  body: unknown,
  name: string | undefined,
  newAnonymousName: () => string,
): DockerCreate {
  const b = obj(body, 'body');
  if (!b) throw invalid('body', 'Config cannot be empty in order to create a container');
  const hc = obj(b['HostConfig'], 'HostConfig') ?? {};
  const image = str(b['Image'], 'Image');
  if (!image) throw invalid('Image', 'no image given');
  const anonymousVolumes: string[] = [];
  const anonymous = () => {
    const n = newAnonymousName();
    anonymousVolumes.push(n);
    return n;
  };

  // What berth cannot honour.
  refuseSet(b['Domainname'], 'Domainname', 'only a hostname is set');
  refuseSet(b['MacAddress'], 'MacAddress', 'berth assigns MAC addresses');
  refuseSet(
    hc['Links'],
    'HostConfig.Links',
    'legacy links are not supported; containers on one network reach each other by name',
  );
  refuseSet(hc['VolumesFrom'], 'HostConfig.VolumesFrom', 'use named volumes');
  refuseSet(hc['VolumeDriver'], 'HostConfig.VolumeDriver', 'only local volumes', ['local']);
  refuseSet(
    hc['DnsOptions'],
    'HostConfig.DnsOptions',
    'only Dns and DnsSearch are written to resolv.conf',
  );
  refuseSet(hc['GroupAdd'], 'HostConfig.GroupAdd', 'supplementary groups come from the image');
  refuseSet(hc['IpcMode'], 'HostConfig.IpcMode', 'each container has a private IPC namespace', [
    'private',
    'shareable',
    'none',
  ]);
  refuseSet(hc['PidMode'], 'HostConfig.PidMode', 'each container has its own PID namespace', [
    'private',
  ]);
  refuseSet(hc['UTSMode'], 'HostConfig.UTSMode', 'each container has its own UTS namespace', [
    'private',
  ]);
  refuseSet(hc['Cgroup'], 'HostConfig.Cgroup', 'each container has its own cgroup');
  refuseSet(
    hc['CgroupnsMode'],
    'HostConfig.CgroupnsMode',
    'the cgroup namespace is berth’s choice',
    ['private', 'host'],
  );
  refuseSet(
    hc['CgroupParent'],
    'HostConfig.CgroupParent',
    'containers live under berthd’s --cgroup-parent',
  );
  refuseSet(hc['OomScoreAdj'], 'HostConfig.OomScoreAdj', 'berth does not set it');
  refuseSet(hc['OomKillDisable'], 'HostConfig.OomKillDisable', 'the OOM killer always applies');
  refuseSet(hc['Init'], 'HostConfig.Init', 'berth runs no init process in the container');
  refuseSet(hc['Runtime'], 'HostConfig.Runtime', 'berth runs runc', ['runc']);
  refuseSet(hc['Isolation'], 'HostConfig.Isolation', 'Linux containers only', ['default']);
  refuseSet(hc['CpusetMems'], 'HostConfig.CpusetMems', 'berth does not set it');
  refuseSet(
    hc['DeviceRequests'],
    'HostConfig.DeviceRequests',
    'no device drivers (GPUs); use Devices',
  );
  refuseSet(hc['DeviceCgroupRules'], 'HostConfig.DeviceCgroupRules', 'use Devices');
  refuseSet(
    hc['KernelMemory'],
    'HostConfig.KernelMemory',
    'deprecated in Docker, not set by berth',
  );
  refuseSet(hc['KernelMemoryTCP'], 'HostConfig.KernelMemoryTCP', 'not set by berth');
  refuseSet(hc['CpuRealtimePeriod'], 'HostConfig.CpuRealtimePeriod', 'not set by berth');
  refuseSet(hc['CpuRealtimeRuntime'], 'HostConfig.CpuRealtimeRuntime', 'not set by berth');
  refuseSet(hc['MemorySwappiness'], 'HostConfig.MemorySwappiness', 'not set by berth', [-1]);
  for (const k of [
    'BlkioWeightDevice',
    'BlkioDeviceReadBps',
    'BlkioDeviceWriteBps',
    'BlkioDeviceReadIOps',
    'BlkioDeviceWriteIOps',
  ])
    refuseSet(
      hc[k],
      `HostConfig.${k}`,
      'per-device I/O limits are not set by berth; BlkioWeight is',
    );

  const req: CreateContainerRequest = { image };
  if (name !== undefined && name !== '') req.name = name;
  const hostname = str(b['Hostname'], 'Hostname');
  if (hostname) req.hostname = hostname;
  const user = str(b['User'], 'User');
  if (user) req.user = user;
  const env = strList(b['Env'], 'Env');
  if (env && env.length > 0) req.env = env;
  const cmd = strSlice(b['Cmd'], 'Cmd');
  if (cmd && cmd.length > 0) req.cmd = cmd;
  // [""] is docker's --entrypoint "": none at all.
  const ep = strSlice(b['Entrypoint'], 'Entrypoint');
  if (ep) req.entrypoint = ep.length === 1 && ep[0] === '' ? [] : ep;
  const workdir = str(b['WorkingDir'], 'WorkingDir');
  if (workdir) req.workdir = workdir;
  const labels = strMap(b['Labels'], 'Labels');
  if (labels && Object.keys(labels).length > 0) req.labels = { ...labels };
  const tty = bool(b['Tty'], 'Tty');
  if (tty) req.tty = true;
  const openStdin = bool(b['OpenStdin'], 'OpenStdin');
  if (openStdin) req.openStdin = true;
  const stopSignal = str(b['StopSignal'], 'StopSignal');
  if (stopSignal) req.stopSignal = stopSignal;
  const stopTimeout = int(b['StopTimeout'], 'StopTimeout');
  if (stopTimeout !== undefined) req.stopTimeout = stopTimeout;
  const hcReq = healthcheck(b['Healthcheck']);
  if (hcReq) req.healthcheck = hcReq;

  // Networking: bridge unless told otherwise.
  req.networkMode = bool(b['NetworkDisabled'], 'NetworkDisabled') ? 'none' : networkMode(hc, b);
  const exposed = Object.keys(obj(b['ExposedPorts'], 'ExposedPorts') ?? {});
  const publishAll = bool(hc['PublishAllPorts'], 'HostConfig.PublishAllPorts') ?? false;
  const ports = portBindings(hc['PortBindings'], exposed, publishAll);
  if (ports.length > 0) req.ports = ports;
  if (publishAll) req.publishAll = true;
  const dns = strList(hc['Dns'], 'HostConfig.Dns');
  if (dns && dns.length > 0) req.dns = dns;
  const dnsSearch = strList(hc['DnsSearch'], 'HostConfig.DnsSearch');
  if (dnsSearch && dnsSearch.length > 0) req.dnsSearch = dnsSearch;
  const extraHosts = strList(hc['ExtraHosts'], 'HostConfig.ExtraHosts');
  if (extraHosts && extraHosts.length > 0) req.extraHosts = extraHosts;

  // Storage: a writable root unless ReadonlyRootfs, bounded by berth's writable size.
  const readonly = bool(hc['ReadonlyRootfs'], 'HostConfig.ReadonlyRootfs') ?? false;
  if (!readonly) req.readWrite = true;
  const so = strMap(hc['StorageOpt'], 'HostConfig.StorageOpt') ?? {};
  for (const [k, v] of Object.entries(so)) {
    if (k !== 'size') throw invalid(`HostConfig.StorageOpt.${k}`, 'only size is supported');
    if (readonly)
      throw invalid('HostConfig.StorageOpt.size', 'a read-only root has no writable layer to size');
    req.writableSizeBytes = parseSize(v, 'HostConfig.StorageOpt.size');
  }
  const mounts: MountRequest[] = [];
  (strList(hc['Binds'], 'HostConfig.Binds') ?? []).forEach((x, i) => mounts.push(parseBind(x, i)));
  const hm = hc['Mounts'];
  if (hm !== undefined && hm !== null) {
    if (!Array.isArray(hm)) throw invalid('HostConfig.Mounts', 'must be a list');
    (hm as unknown[]).forEach((x, i) => mounts.push(parseMount(x, i, anonymous)));
  }
  for (const [target, opts] of Object.entries(strMap(hc['Tmpfs'], 'HostConfig.Tmpfs') ?? {}))
    mounts.push(parseTmpfs(target, opts));
  // -v /path: an anonymous volume, unless a bind or mount already covers the path.
  for (const target of Object.keys(obj(b['Volumes'], 'Volumes') ?? {})) {
    if (mounts.some((m) => m.target.replace(/\/+$/, '') === target.replace(/\/+$/, ''))) continue;
    mounts.push({ type: 'volume', source: anonymous(), target });
  }
  if (mounts.length > 0) req.mounts = mounts;
  const shm = int(hc['ShmSize'], 'HostConfig.ShmSize');
  if (shm) req.shmSizeBytes = shm;

  const res = resources(hc);
  if (res) req.resources = res;
  const rp = dockerRestartPolicy(hc['RestartPolicy']);
  if (rp && rp.name !== 'no') req.restartPolicy = rp;
  const autoRemove = bool(hc['AutoRemove'], 'HostConfig.AutoRemove');
  if (autoRemove) req.autoRemove = true;
  const lo = logOpts(hc['LogConfig']);
  if (lo) req.logOpts = lo;
  const cs = hc['ConsoleSize'];
  if (Array.isArray(cs) && cs.length === 2) {
    const [h, w] = cs as unknown[];
    if (typeof h === 'number' && typeof w === 'number' && h > 0 && w > 0) req.consoleSize = [h, w];
  }

  // Security: berth's engine checks them.
  const privileged = bool(hc['Privileged'], 'HostConfig.Privileged');
  if (privileged) req.privileged = true;
  const capAdd = strList(hc['CapAdd'], 'HostConfig.CapAdd');
  if (capAdd && capAdd.length > 0) req.capAdd = capAdd;
  const capDrop = strList(hc['CapDrop'], 'HostConfig.CapDrop');
  if (capDrop && capDrop.length > 0) req.capDrop = capDrop;
  const secOpt = strList(hc['SecurityOpt'], 'HostConfig.SecurityOpt');
  if (secOpt && secOpt.length > 0) req.securityOpt = secOpt;
  const devs = devices(hc['Devices']);
  if (devs) req.devices = devs;
  const sysctls = strMap(hc['Sysctls'], 'HostConfig.Sysctls');
  if (sysctls && Object.keys(sysctls).length > 0) req.sysctls = { ...sysctls };
  const userns = str(hc['UsernsMode'], 'HostConfig.UsernsMode') ?? '';
  if (userns !== '') {
    if (userns !== 'host' && userns !== 'auto')
      throw invalid('HostConfig.UsernsMode', `"${userns}" is not supported (host, auto)`);
    req.userns = userns;
  }
  return { req, anonymousVolumes };
}
