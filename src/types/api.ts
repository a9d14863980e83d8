import type { NetworkCreateFields } from './ports.ts';

// Request and response shapes of the native API, shared by the API, engine and client.

export interface CreateContainerRequest extends NetworkCreateFields {
  image: string;
  name?: string;
  cmd?: string[];
  entrypoint?: string[];
  env?: string[];
  workdir?: string;
  user?: string;
  hostname?: string;
  labels?: Record<string, string>;
  tty?: boolean;
  openStdin?: boolean;
  autoRemove?: boolean;
  networkMode?: string;
  stopSignal?: string;
  stopTimeout?: number;
  consoleSize?: [number, number];
  logOpts?: Record<string, string>;
  resources?: ResourcesRequest;
  restartPolicy?: RestartPolicyRequest;
  healthcheck?: HealthcheckRequest;
  mounts?: MountRequest[];
  shmSizeBytes?: number;
  readWrite?: boolean;
  writableSizeBytes?: number;
  ephemeral?: boolean;
  // auto: a user namespace of the container's own; host: none; absent or '': the daemon's
  // default (--userns-default).
  userns?: string;
  // Docker's HostConfig security fields.
  privileged?: boolean;
  // Capability names, with or without CAP_, or ALL.
  capAdd?: string[];
  capDrop?: string[];
  // seccomp=unconfined, seccomp=<profile JSON>, no-new-privileges[=true|false].
  securityOpt?: string[];
  devices?: DeviceRequest[];
  // Namespaced sysctls only: kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.*.
  sysctls?: Record<string, string>;
}

// Docker's DeviceMapping.
export interface DeviceRequest {
  pathOnHost: string;
  // Defaults to pathOnHost.
  pathInContainer?: string;
  // Any of r, w, m; defaults to rwm.
  cgroupPermissions?: string;
}

export interface MountRequest {
  type: string;
  source?: string;
  target: string;
  readOnly?: boolean;
  // noexec, nosuid, nodev, exec, suid, dev
  options?: string[];
  sizeBytes?: number;
  mode?: string;
  // -v HOST:CTR makes a missing host directory, as docker's -v does; --mount does not.
  createHostPath?: boolean;
}

// Docker's RestartPolicy, and berth's backoff settings (milliseconds).
export interface RestartPolicyRequest {
  name: string;
  maximumRetryCount?: number;
  delayMs?: number;
  maxDelayMs?: number;
  factor?: number;
  resetAfterMs?: number;
  jitter?: number;
}

// Docker's HealthConfig (durations in milliseconds here), and what to do when unhealthy.
export interface HealthcheckRequest {
  test?: string[];
  intervalMs?: number;
  timeoutMs?: number;
  retries?: number;
  startPeriodMs?: number;
  onFailure?: string;
}

// Limits as a client states them; berthd checks them against the host and converts.
export interface ResourcesRequest {
  memory?: number;
  memoryReservation?: number;
  memorySwap?: number;
  cpus?: number;
  cpuShares?: number;
  cpusetCpus?: string;
  pidsLimit?: number;
  blkioWeight?: number;
  ulimits?: { name: string; soft: number; hard: number }[];
}

export interface CreateContainerResponse {
  Id: string;
  Warnings: string[];
}

export interface ExecRequest {
  cmd: string[];
  env?: string[];
  workdir?: string;
  user?: string;
  tty?: boolean;
  stdin?: boolean;
  consoleSize?: [number, number];
}

export type WaitCondition = 'not-running' | 'next-exit' | 'removed';

export interface ContainerSummary {
  Id: string;
  Names: string[];
  Image: string;
  ImageID: string;
  Command: string;
  Created: number;
  State: string;
  Status: string;
  Labels: Record<string, string>;
  Pid: number;
  Ports: { IP: string; PrivatePort: number; PublicPort: number; Type: string }[];
  SizeRw?: number;
  SizeRootFs?: number;
}

export interface ErrorBody {
  code: string;
  message: string;
}
