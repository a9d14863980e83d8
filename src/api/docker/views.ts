// Containers as Docker's API shows them: inspect (ContainerJSON), list (Container summary)
// and `ps --filter`. The native views (api/views.ts) are already Docker-shaped; these add
// what Docker's clients read and correct what differs on this surface (a writable root,
// Docker's resource fields, mounts, networks).
import type { ContainerRecord } from '../../types/domain.ts';
import type { ApiDeps } from '../server.ts';
import { containerInspect, containerSummary } from '../views.ts';
import { BerthError, invalid } from '../../util/errors.ts';
import { parseFiltersJson } from '../../engine/filters.ts';

type Obj = Record<string, unknown>;

export function dockerState(c: ContainerRecord): string {
  return c.state === 'starting' ? 'created' : c.state === 'stopping' ? 'running' : c.state;
}

// Docker's Command in `ps`: the path, then each argument, quoted when it has a space.
function command(c: ContainerRecord): string {
  const all = [...c.config.entrypoint, ...c.config.cmd];
  const [path = '', ...args] = all;
  if (args.length === 0) return path;
  return `${path} ${args.map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ')}`;
}

function dockerMounts(deps: ApiDeps, c: ContainerRecord): Obj[] {
  return (c.config.mounts ?? []).map((m) => {
    if (m.type === 'volume') {
      let source = '';
      try {
        source = deps.volumes.mountpoint(m.source);
      } catch {
        /* removed meanwhile */
      }
      return {
        Type: 'volume',
        Name: m.source,
        Source: source,
        Destination: m.target,
        Driver: 'local',
        Mode: m.readOnly ? 'ro' : 'z',
        RW: !m.readOnly,
        Propagation: '',
      };
    }
    if (m.type === 'bind')
      return {
        Type: 'bind',
        Source: m.source,
        Destination: m.target,
        Mode: m.readOnly ? 'ro' : '',
        RW: !m.readOnly,
        Propagation: 'rprivate',
      };
    return {
      Type: 'tmpfs',
      Source: '',
      Destination: m.target,
      Mode: '',
      RW: !m.readOnly,
      Propagation: '',
    };
  });
}

// The network a container is on, as Docker's Networks map says it (also while stopped).
function networks(deps: ApiDeps, c: ContainerRecord): Record<string, Obj> {
  const mode = c.config.networkMode;
  if (mode === 'container') return {};
  const a = deps.containers.netView(c.id).attachment;
  const name = mode === 'bridge' ? (c.config.network ?? 'bridge') : mode;
  let networkId = '';
  if (mode === 'bridge') {
    try {
      networkId = deps.networks.get(name).id;
    } catch {
      /* removed meanwhile */
    }
  }
  return {
    [name]: {
      IPAMConfig: null,
      Links: null,
      Aliases: mode === 'bridge' ? [c.name, c.id.slice(0, 12)] : null,
      NetworkID: networkId,
      EndpointID: a ? c.id : '',
      Gateway: a?.gateway ?? '',
      IPAddress: a?.ip ?? '',
      IPPrefixLen: a?.prefixLen ?? 0,
      IPv6Gateway: '',
      GlobalIPv6Address: '',
      GlobalIPv6PrefixLen: 0,
      MacAddress: a?.mac ?? '',
      DriverOpts: null,
    },
  };
}

function exposedPorts(deps: ApiDeps, c: ContainerRecord): Record<string, Obj> {
  const out: Record<string, Obj> = {};
  try {
    for (const p of deps.images.resolve(c.config.imageId).config.exposedPorts ?? []) out[p] = {};
  } catch {
    /* image gone */
  }
  for (const b of deps.containers.netView(c.id).bindings)
    out[`${b.containerPort}/${b.protocol}`] = {};
  return out;
}

// Docker's NetworkSettings.Ports: every published port with its host address (0.0.0.0 for
// all of the host's), and exposed ports that are not published as null.
function dockerPortMap(
  deps: ApiDeps,
  c: ContainerRecord,
): Record<string, { HostIp: string; HostPort: string }[] | null> {
  const m: Record<string, { HostIp: string; HostPort: string }[] | null> = {};
  for (const k of Object.keys(exposedPorts(deps, c))) m[k] = null;
  for (const b of deps.containers.netView(c.id).bindings)
    (m[`${b.containerPort}/${b.protocol}`] ??= []).push({
      HostIp: b.hostIP || '0.0.0.0',
      HostPort: String(b.hostPort),
    });
  return m;
}

export function dockerSummary(deps: ApiDeps, c: ContainerRecord, sizes?: Obj): Obj {
  const net = deps.containers.netView(c.id);
  const s = containerSummary(c, net);
  return {
    Id: s.Id,
    Names: s.Names,
    Image: s.Image,
    ImageID: s.ImageID,
    Command: command(c),
    Created: s.Created,
    Ports: s.Ports,
    Labels: s.Labels,
    State: s.State,
    Status: s.Status,
    HostConfig: { NetworkMode: networkModeName(c) },
    NetworkSettings: { Networks: networks(deps, c) },
    Mounts: dockerMounts(deps, c),
    ...sizes,
  };
}

function networkModeName(c: ContainerRecord): string {
  if (c.config.networkMode === 'container') return `container:${c.config.network ?? ''}`;
  if (c.config.networkMode === 'bridge') return c.config.network ?? 'bridge';
  return c.config.networkMode;
}

export function dockerInspect(deps: ApiDeps, c: ContainerRecord): Obj {
  const { containers } = deps;
  const net = containers.netView(c.id);
  const base = containerInspect(c, containers.logPath(c.id), net);
  const baseConfig = base['Config'] as Obj;
  const baseHost = base['HostConfig'] as Obj;
  const baseNet = base['NetworkSettings'] as Obj;
  const r = c.config.resources ?? {};
  const mounts = c.config.mounts ?? [];
  const quota = r.cpuQuota ?? 0;
  const period = r.cpuPeriod ?? 0;
  const dir = containers.stateDir(c.id);
  const running = c.state === 'running' || c.state === 'stopping';
  return {
    ...base,
    ResolvConfPath: running ? `${dir}/resolv.conf` : '',
    HostnamePath: running ? `${dir}/hostname` : '',
    HostsPath: running ? `${dir}/hosts` : '',
    Driver: 'overlay2',
    MountLabel: '',
    ProcessLabel: '',
    AppArmorProfile: '',
    ExecIDs: null,
    GraphDriver: { Name: 'overlay2', Data: null },
    Mounts: dockerMounts(deps, c),
    Config: {
      ...baseConfig,
      Domainname: '',
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      ExposedPorts: exposedPorts(deps, c),
      Volumes: null,
      OnBuild: null,
    },
    HostConfig: {
      ...baseHost,
      Binds: mounts
        .filter((m) => m.type !== 'tmpfs')
        .map((m) => `${m.source}:${m.target}${m.readOnly ? ':ro' : ''}`),
      ContainerIDFile: '',
      VolumeDriver: '',
      VolumesFrom: null,
      ConsoleSize: c.config.consoleSize ? [...c.config.consoleSize] : [0, 0],
      DnsOptions: [],
      GroupAdd: null,
      IpcMode: 'private',
      Cgroup: '',
      CgroupnsMode: '',
      Links: null,
      OomScoreAdj: 0,
      PidMode: '',
      PublishAllPorts: false,
      ReadonlyRootfs: !c.config.writable,
      StorageOpt: c.config.writable ? { size: String(c.config.writable.sizeBytes) } : null,
      Tmpfs: Object.fromEntries(
        mounts
          .filter((m) => m.type === 'tmpfs')
          .map((m) => [
            m.target,
            [
              m.readOnly ? 'ro' : 'rw',
              ...m.flags,
              ...(m.sizeBytes !== undefined ? [`size=${m.sizeBytes}`] : []),
              ...(m.mode !== undefined ? [`mode=${m.mode}`] : []),
            ].join(','),
          ]),
      ),
      UTSMode: '',
      ShmSize: c.config.shmSizeBytes ?? 64 * 1024 * 1024,
      Runtime: 'runc',
      Isolation: '',
      CpuShares: r.cpuShares ?? 0,
      Memory: r.memory ?? 0,
      NanoCpus: quota > 0 && period > 0 ? Math.round((quota / period) * 1e9) : 0,
      CgroupParent: '',
      BlkioWeight: r.blkioWeight ?? 0,
      BlkioWeightDevice: [],
      BlkioDeviceReadBps: [],
      BlkioDeviceWriteBps: [],
      BlkioDeviceReadIOps: [],
      BlkioDeviceWriteIOps: [],
      CpuPeriod: period,
      CpuQuota: quota,
      CpuRealtimePeriod: 0,
      CpuRealtimeRuntime: 0,
      CpusetCpus: r.cpusetCpus ?? '',
      CpusetMems: '',
      DeviceCgroupRules: null,
      DeviceRequests: null,
      MemoryReservation: r.memoryReservation ?? 0,
      MemorySwap: r.memorySwap ?? 0,
      MemorySwappiness: null,
      OomKillDisable: false,
      PidsLimit: r.pidsLimit ?? null,
      Ulimits: (r.ulimits ?? []).map((u) => ({ Name: u.name, Soft: u.soft, Hard: u.hard })),
      CpuCount: 0,
      CpuPercent: 0,
      IOMaximumIOps: 0,
      IOMaximumBandwidth: 0,
      Mounts: null,
      MaskedPaths: null,
      ReadonlyPaths: null,
      Init: null,
    },
    NetworkSettings: {
      Bridge: '',
      SandboxID: net.attachment ? c.id : '',
      HairpinMode: false,
      LinkLocalIPv6Address: '',
      LinkLocalIPv6PrefixLen: 0,
      Ports: dockerPortMap(deps, c),
      SandboxKey: baseNet['SandboxKey'],
      SecondaryIPAddresses: null,
      SecondaryIPv6Addresses: null,
      EndpointID: net.attachment ? c.id : '',
      Gateway: baseNet['Gateway'],
      GlobalIPv6Address: '',
      GlobalIPv6PrefixLen: 0,
      IPAddress: baseNet['IPAddress'],
      IPPrefixLen: baseNet['IPPrefixLen'],
      IPv6Gateway: '',
      MacAddress: baseNet['MacAddress'],
      Networks: networks(deps, c),
    },
  };
}

// ---- docker ps --filter ----

const STATUSES = new Set([
  'created',
  'restarting',
  'running',
  'removing',
  'paused',
  'exited',
  'dead',
]);
const HEALTH = new Set(['starting', 'healthy', 'unhealthy', 'none']);
const KEYS = new Set([
  'ancestor',
  'before',
  'expose',
  'exited',
  'health',
  'id',
  'isolation',
  'is-task',
  'label',
  'name',
  'network',
  'publish',
  'since',
  'status',
  'volume',
]);

const withTag = (v: string) => (/:[^/]*$/.test(v) || v.includes('@') ? v : `${v}:latest`);

function regexMatch(pattern: string, s: string): boolean {
  try {
    return new RegExp(pattern).test(s);
  } catch {
    return s.includes(pattern);
  }
}

function labelMatch(labels: Readonly<Record<string, string>>, v: string): boolean {
  const ne = v.indexOf('!=');
  if (ne > 0) return labels[v.slice(0, ne)] !== v.slice(ne + 2);
  const i = v.indexOf('=');
  return i < 0 ? v in labels : labels[v.slice(0, i)] === v.slice(i + 1);
}

function portMatch(spec: string, ports: readonly { port: number; proto: string }[]): boolean {
  const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp))?$/.exec(spec);
  if (!m) throw new BerthError('INVALID_ARGUMENT', `invalid port filter "${spec}"`);
  const lo = Number(m[1]);
  const hi = m[2] !== undefined ? Number(m[2]) : lo;
  const proto = m[3] ?? 'tcp';
  return ports.some((p) => p.port >= lo && p.port <= hi && p.proto === proto);
}

export type ContainerFilter = (c: ContainerRecord) => boolean;

export function dockerContainerFilter(
  deps: ApiDeps,
  json: string | undefined,
): { match: ContainerFilter; wantsAll: boolean } {
  const f = parseFiltersJson(json);
  for (const [k, vs] of Object.entries(f)) {
    if (!KEYS.has(k)) throw new BerthError('INVALID_ARGUMENT', `Invalid filter '${k}'`);
    if (k === 'status')
      for (const v of vs)
        if (!STATUSES.has(v)) throw invalid('filters', `Invalid filter 'status=${v}'`);
    if (k === 'health')
      for (const v of vs)
        if (!HEALTH.has(v)) throw invalid('filters', `Invalid filter 'health=${v}'`);
    if (k === 'exited')
      for (const v of vs)
        if (!/^-?\d+$/.test(v)) throw invalid('filters', `exited=${v} is not a number`);
  }
  const createdOf = (ref: string) => {
    const c = deps.containers.resolve(ref);
    return Date.parse(c.createdAt);
  };
  const before = (f['before'] ?? []).map(createdOf);
  const since = (f['since'] ?? []).map(createdOf);
  const networkIds = (f['network'] ?? []).map((n) => {
    try {
      return deps.networks.get(n).name;
    } catch {
      return n;
    }
  });
  const any = (k: string, pred: (v: string) => boolean) => {
    const vs = f[k];
    return !vs || vs.length === 0 || vs.some(pred);
  };
  const match = (c: ContainerRecord): boolean => {
    const created = Date.parse(c.createdAt);
    const health = c.config.healthcheck ? (c.health?.status ?? 'starting') : 'none';
    const bindings = () =>
      deps.containers
        .netView(c.id)
        .bindings.map((b) => ({ port: b.containerPort, proto: b.protocol }));
    const exposed = () =>
      Object.keys(exposedPorts(deps, c)).map((k) => {
        const [p = '0', proto = 'tcp'] = k.split('/');
        return { port: Number(p), proto };
      });
    return (
      any('id', (v) => c.id.startsWith(v)) &&
      any('name', (v) => regexMatch(v, `/${c.name}`)) &&
      any('status', (v) => dockerState(c) === v) &&
      any('exited', (v) => c.state === 'exited' && c.exitCode === Number(v)) &&
      any('label', (v) => labelMatch(c.config.labels, v)) &&
      any(
        'ancestor',
        (v) =>
          c.config.image === v ||
          withTag(c.config.image) === withTag(v) ||
          withTag(c.config.image) === withTag(`docker.io/library/${v}`) ||
          c.config.imageId.startsWith(v.replace(/^sha256:/, '')),
      ) &&
      any('health', (v) => health === v) &&
      any('is-task', (v) => v === 'false') &&
      any('isolation', (v) => v === 'default' || v === '') &&
      any(
        'volume',
        (v) => c.config.mounts?.some((m) => m.source === v || m.target === v) ?? false,
      ) &&
      (networkIds.length === 0 ||
        (c.config.networkMode === 'bridge'
          ? networkIds.includes(c.config.network ?? 'bridge')
          : networkIds.includes(c.config.networkMode))) &&
      any('publish', (v) => portMatch(v, bindings())) &&
      any('expose', (v) => portMatch(v, exposed())) &&
      before.every((t) => created < t) &&
      since.every((t) => created > t)
    );
  };
  const wantsAll =
    (f['status']?.length ?? 0) > 0 ||
    (f['exited']?.length ?? 0) > 0 ||
    (f['before']?.length ?? 0) > 0 ||
    (f['since']?.length ?? 0) > 0;
  return { match, wantsAll };
}
