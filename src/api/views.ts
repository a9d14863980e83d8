// Docker-shaped views of berth's records, so `inspect` output and templates written for
// docker keep working.
import type { ContainerSummary } from '../types/api.ts';
import type { ContainerRecord, ImageRecord } from '../types/domain.ts';
import { ZERO_TIME } from '../util/time.ts';

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

export function statusText(c: ContainerRecord, now = Date.now()): string {
  switch (dockerState(c)) {
    case 'running':
      return `Up ${ago(c.startedAt, now)}`;
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

export function containerSummary(c: ContainerRecord): ContainerSummary {
  return {
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

export function containerInspect(c: ContainerRecord, logPath: string): Record<string, unknown> {
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
      Restarting: false,
      OOMKilled: c.oomKilled,
      OOMKillCount: c.oomKills,
      Dead: false,
      Pid: running ? c.pid : 0,
      ExitCode: c.exitCode,
      Error: c.error,
      StartedAt: c.startedAt || ZERO_TIME,
      FinishedAt: c.finishedAt || ZERO_TIME,
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
    },
    HostConfig: {
      NetworkMode: c.config.networkMode,
      AutoRemove: c.config.autoRemove,
      ReadonlyRootfs: true,
      RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
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
      Networks: {},
      Ports: {},
      SandboxKey: '',
      IPAddress: '',
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
