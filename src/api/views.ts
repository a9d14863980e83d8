// Docker-shaped views of berth's records, so `inspect` output and templates written for
// docker keep working.
import type { ContainerSummary } from '../types/api.ts';
import type { NetworkAttachment } from '../types/network.ts';
import type { PortBinding } from '../types/ports.ts';
import type { ContainerRecord, ImageRecord } from '../types/domain.ts';
import { ZERO_TIME } from '../util/time.ts';
import { DEFAULT_SECURITY } from '../engine/security.ts';

// A container's network as the views show it: its host ports, and its address on a berth
// network.
export interface NetView {
  readonly bindings: readonly PortBinding[];
  readonly attachment?: NetworkAttachment | undefined;
}

const NO_NET: NetView = { bindings: [] };

function networkModeName(c: ContainerRecord): string {
  if (c.config.networkMode === 'container') return `container:${c.config.network ?? ''}`;
  if (c.config.networkMode === 'bridge') return c.config.network ?? 'bridge';
  return c.config.networkMode;
}

function dockerPorts(net: NetView) {
  return net.bindings.map((b) => ({
    IP: b.hostIP || '0.0.0.0',
    PrivatePort: b.containerPort,
    PublicPort: b.hostPort,
    Type: b.protocol,
  }));
}

function portMap(net: NetView): Record<string, { HostIp: string; HostPort: string }[]> {
  const m: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const b of net.bindings)
    (m[`${b.containerPort}/${b.protocol}`] ??= []).push({
      HostIp: b.hostIP,
      HostPort: String(b.hostPort),
    });
  return m;
}

function dockerState(c: ContainerRecord): string {
  switch (c.state) {
    case 'starting':
      return 'created';
    case 'stopping':
      return 'running';
    default:
      return c.state;
  }
}

function ago(iso: string, now: number): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 1) return 'Less than a second';
  if (s < 60) return `${s} second${s === 1 ? '' : 's'}`;
  const m = Math.round(s / 60);
  if (m < 60) return m === 1 ? 'About a minute' : `${m} minutes`;
  const h = Math.round(m / 60);
  if (h < 48) return h === 1 ? 'About an hour' : `${h} hours`;
  return `${Math.round(h / 24)} days`;
}

function healthSuffix(c: ContainerRecord): string {
  if (!c.config.healthcheck || !c.health) return '';
  return c.health.status === 'starting' ? ' (health: starting)' : ` (${c.health.status})`;
}

export function statusText(c: ContainerRecord, now = Date.now()): string {
  switch (dockerState(c)) {
    case 'running':
      return `Up ${ago(c.startedAt, now)}${healthSuffix(c)}`;
    case 'restarting':
      return c.finishedAt
        ? `Restarting (${c.exitCode}) ${ago(c.finishedAt, now)} ago`
        : `Restarting (${c.exitCode})`;
    case 'exited':
      return c.finishedAt
        ? `Exited (${c.exitCode}) ${ago(c.finishedAt, now)} ago`
        : `Exited (${c.exitCode})`;
    case 'removing':
      return 'Removal In Progress';
    default:
      return 'Created';
  }
}

function commandLine(c: ContainerRecord): string {
  return [...c.config.entrypoint, ...c.config.cmd]
    .map((a) => (/\s/.test(a) ? JSON.stringify(a) : a))
    .join(' ');
}

export function containerSummary(
  c: ContainerRecord,
  net: NetView = NO_NET,
  sizes?: { SizeRw: number; SizeRootFs: number },
): ContainerSummary {
  return {
    ...sizes,
    Ports: dockerPorts(net),
    Id: c.id,
    Names: [`/${c.name}`],
    Image: c.config.image,
    ImageID: `sha256:${c.config.imageId}`,
    Command: commandLine(c),
    Created: Math.floor(Date.parse(c.createdAt) / 1000),
    State: dockerState(c),
    Status: statusText(c),
    Labels: { ...c.config.labels },
    Pid: c.state === 'running' ? c.pid : 0,
  };
}

// Docker's HostConfig security fields (null for an empty list, as Docker shows them), and
// berth's effective no-new-privileges and seccomp mode.
function securityView(c: ContainerRecord): Record<string, unknown> {
  const sec = c.config.security ?? DEFAULT_SECURITY;
  const list = (l: readonly string[]) => (l.length > 0 ? [...l] : null);
  return {
    Privileged: sec.privileged,
    CapAdd: list(sec.capAdd),
    CapDrop: list(sec.capDrop),
    SecurityOpt: list(sec.securityOpt),
    Devices: sec.devices.map((d) => ({
      PathOnHost: d.pathOnHost,
      PathInContainer: d.pathInContainer,
      CgroupPermissions: d.permissions,
    })),
    ...(Object.keys(sec.sysctls).length > 0 ? { Sysctls: { ...sec.sysctls } } : {}),
    // berth: true unless no-new-privileges=false (Docker's default is false).
    NoNewPrivileges: sec.noNewPrivileges,
    // berth: default (berth's profile), custom or unconfined.
    Seccomp: sec.privileged ? 'unconfined' : sec.seccomp,
  };
}

export function containerInspect(
  c: ContainerRecord,
  logPath: string,
  net: NetView = NO_NET,
): Record<string, unknown> {
  const a = net.attachment;
  const state = dockerState(c);
  const running = state === 'running';
  return {
    Id: c.id,
    Created: c.createdAt,
    Path: c.config.entrypoint[0] ?? c.config.cmd[0] ?? '',
    Args: [...c.config.entrypoint, ...c.config.cmd].slice(1),
    State: {
      Status: state,
      Running: running,
      Paused: false,
      Restarting: state === 'restarting',
      OOMKilled: c.oomKilled,
      OOMKillCount: c.oomKills,
      Dead: false,
      Pid: running ? c.pid : 0,
      ExitCode: c.exitCode,
      // berth: the signal that ended the last run (0: it exited by itself).
      ExitSignal: c.signal,
      Error: c.error,
      StartedAt: c.startedAt || ZERO_TIME,
      FinishedAt: c.finishedAt || ZERO_TIME,
      // berth: when the monitor will run it again (while restarting).
      NextRestartAt: c.nextRestartAt || ZERO_TIME,
      ...(c.config.healthcheck
        ? {
            Health: {
              Status: c.health?.status ?? 'starting',
              FailingStreak: c.health?.failingStreak ?? 0,
              Log: (c.health?.log ?? []).map((r) => ({
                Start: r.start,
                End: r.end,
                ExitCode: r.exitCode,
                Output: r.output,
              })),
            },
          }
        : {}),
    },
    Image: `sha256:${c.config.imageId}`,
    ResolvConfPath: '',
    HostnamePath: '',
    HostsPath: '',
    LogPath: logPath,
    LogConfig: {
      MaxSize: c.config.log.maxSize,
      MaxFiles: c.config.log.maxFiles,
      Compress: c.config.log.compress,
      DroppedBytes: c.logDroppedBytes,
    },
    Name: `/${c.name}`,
    RestartCount: c.restartCount,
    Driver: 'berth',
    Platform: 'linux',
    MonitorPid: c.monitorPid,
    Config: {
      Hostname: c.config.hostname,
      User: c.config.user,
      AttachStdin: false,
      Tty: c.config.tty,
      OpenStdin: c.config.openStdin,
      StdinOnce: c.config.openStdin,
      Env: [...c.config.env],
      Cmd: [...c.config.cmd],
      Entrypoint: c.config.entrypoint.length > 0 ? [...c.config.entrypoint] : null,
      Image: c.config.image,
      WorkingDir: c.config.workdir,
      Labels: { ...c.config.labels },
      StopSignal: c.config.stopSignal,
      StopTimeout: c.config.stopTimeout,
      ...(c.config.healthcheck
        ? {
            // Docker's durations are nanoseconds.
            Healthcheck: {
              Test: [...c.config.healthcheck.test],
              Interval: c.config.healthcheck.intervalMs * 1e6,
              Timeout: c.config.healthcheck.timeoutMs * 1e6,
              StartPeriod: c.config.healthcheck.startPeriodMs * 1e6,
              Retries: c.config.healthcheck.retries,
              OnFailure: c.config.healthcheck.onFailure,
            },
          }
        : {}),
    },
    HostConfig: {
      NetworkMode: networkModeName(c),
      PortBindings: portMap(net),
      ExtraHosts: [...(c.config.extraHosts ?? [])],
      Dns: [...(c.config.dns ?? [])],
      DnsSearch: [...(c.config.dnsSearch ?? [])],
      AutoRemove: c.config.autoRemove,
      ReadonlyRootfs: true,
      // Docker's field ('host', or berth's 'auto'); the range is berth's own field.
      UsernsMode: c.config.userns ? 'auto' : 'host',
      ...(c.config.userns
        ? {
            UsernsMapping: {
              UidBase: c.config.userns.uidBase,
              GidBase: c.config.userns.gidBase,
              Size: c.config.userns.size,
            },
          }
        : {}),
      ...securityView(c),
      RestartPolicy: {
        Name: c.config.restart?.name ?? 'no',
        MaximumRetryCount: c.config.restart?.maxRetries ?? 0,
        // berth's backoff, in milliseconds.
        DelayMs: c.config.restart?.delayMs ?? 100,
        MaxDelayMs: c.config.restart?.maxDelayMs ?? 60_000,
        Factor: c.config.restart?.factor ?? 2,
        ResetAfterMs: c.config.restart?.resetAfterMs ?? 10_000,
        Jitter: c.config.restart?.jitter ?? 0,
      },
      LogConfig: {
        Type: 'berth-monitor',
        Config: {
          'max-size': String(c.config.log.maxSize),
          'max-file': String(c.config.log.maxFiles),
          compress: String(c.config.log.compress),
        },
      },
    },
    Mounts: [],
    NetworkSettings: {
      Networks: a
        ? {
            [a.network]: {
              IPAddress: a.ip,
              IPPrefixLen: a.prefixLen,
              Gateway: a.gateway,
              MacAddress: a.mac,
            },
          }
        : {},
      Ports: portMap(net),
      SandboxKey: a?.netnsPath ?? '',
      IPAddress: a?.ip ?? '',
      IPPrefixLen: a?.prefixLen ?? 0,
      Gateway: a?.gateway ?? '',
      MacAddress: a?.mac ?? '',
    },
  };
}

export function imageSummary(i: ImageRecord): Record<string, unknown> {
  return {
    Id: `sha256:${i.id}`,
    RepoTags: i.repo === '<none>' ? [] : [`${i.repo}:${i.tag}`],
    Repository: i.repo,
    Tag: i.tag,
    Created: Math.floor(Date.parse(i.createdAt) / 1000),
    Size: i.size,
    Labels: { ...i.config.labels },
  };
}
