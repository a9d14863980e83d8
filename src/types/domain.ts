// Domain records as the store keeps them. The engine owns their meaning; the store only
// persists them.

export type ContainerState =
  'created' | 'starting' | 'running' | 'restarting' | 'stopping' | 'exited' | 'removing';

export type RestartPolicyName = 'no' | 'on-failure' | 'always' | 'unless-stopped';

// What the monitor does when the container's init exits. Times in milliseconds.
export interface RestartPolicy {
  readonly name: RestartPolicyName;
  // on-failure only: restarts before giving up; 0 for no limit.
  readonly maxRetries: number;
  readonly delayMs: number;
  readonly maxDelayMs: number;
  readonly factor: number;
  // A run at least this long resets the delay to delayMs.
  readonly resetAfterMs: number;
  // Each delay is moved by up to this fraction of itself, either way (0 to 1).
  readonly jitter: number;
}

// A mount a container asked for, checked. source: a host path (bind), a volume name
// (volume), unused for tmpfs.
export interface MountSpec {
  readonly type: 'bind' | 'volume' | 'tmpfs';
  readonly source: string;
  readonly target: string;
  readonly readOnly: boolean;
  // noexec, nosuid, nodev (or exec, suid, dev to lift a default).
  readonly flags: readonly string[];
  readonly sizeBytes?: number;
  readonly mode?: string;
}

// A writable root: an overlay on the image whose upper layer lives in a filesystem of
// sizeBytes, so writes end in ENOSPC there; ephemeral resets it before every run.
export interface WritableRoot {
  readonly sizeBytes: number;
  readonly ephemeral: boolean;
}

export type HealthOnFailure = 'none' | 'kill' | 'restart' | 'stop';

export interface HealthConfig {
  // Docker's form: ["CMD", args...] or ["CMD-SHELL", command].
  readonly test: readonly string[];
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly startPeriodMs: number;
  readonly onFailure: HealthOnFailure;
}

export interface HealthResult {
  readonly start: string;
  readonly end: string;
  readonly exitCode: number;
  readonly output: string;
}

export interface HealthState {
  readonly status: 'starting' | 'healthy' | 'unhealthy';
  readonly failingStreak: number;
  // The last few results, oldest first.
  readonly log: readonly HealthResult[];
}
// bridge: its own network namespace on a berth network (the default one, `bridge`, or a
// user network); container: another container's namespace.
export type NetworkMode = 'none' | 'host' | 'bridge' | 'container';

export interface LogConfig {
  readonly maxSize: number;
  readonly maxFiles: number;
  readonly compress: boolean;
}

export interface Ulimit {
  readonly name: string;
  readonly soft: number;
  readonly hard: number;
}

// Cgroup limits and rlimits, in the units the kernel takes.
export interface Resources {
  readonly memory?: number;
  readonly memoryReservation?: number;
  // Memory plus swap; -1 for unlimited.
  readonly memorySwap?: number;
  // CPU time per period, in microseconds.
  readonly cpuQuota?: number;
  readonly cpuPeriod?: number;
  readonly cpuShares?: number;
  readonly cpusetCpus?: string;
  // -1 for unlimited.
  readonly pidsLimit?: number;
  readonly blkioWeight?: number;
  readonly ulimits?: readonly Ulimit[];
}

// A host device node the container gets (--device HOST[:CONTAINER[:PERMS]]).
export interface DeviceMapping {
  readonly pathOnHost: string;
  readonly pathInContainer: string;
  // The device cgroup's access: any of r, w, m.
  readonly permissions: string;
}

// What a container may do beyond berth's defaults (or less). Absent in containers created
// before it existed: the defaults.
export interface SecurityConfig {
  // All capabilities, every host device, no seccomp, /sys writable, nothing masked.
  readonly privileged: boolean;
  // CAP_ names, or ALL.
  readonly capAdd: readonly string[];
  readonly capDrop: readonly string[];
  // berth's default is true (Docker's is false).
  readonly noNewPrivileges: boolean;
  // default: berth's profile; custom: seccompProfile (Docker's or OCI's JSON).
  readonly seccomp: 'default' | 'unconfined' | 'custom';
  readonly seccompProfile?: string;
  // The --security-opt values as given (normalized), for inspect.
  readonly securityOpt: readonly string[];
  readonly devices: readonly DeviceMapping[];
  readonly sysctls: Readonly<Record<string, string>>;
}

// A user namespace's mapping: container ids 0..size-1 are host uids uidBase.. and gids
// gidBase.. (a range berthd allocated to the container; store/userns.ts).
export interface UsernsMapping {
  readonly uidBase: number;
  readonly gidBase: number;
  readonly size: number;
}

export interface ContainerConfig {
  readonly image: string;
  readonly imageId: string;
  readonly cmd: readonly string[];
  readonly entrypoint: readonly string[];
  readonly env: readonly string[];
  readonly workdir: string;
  readonly user: string;
  readonly hostname: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly tty: boolean;
  readonly openStdin: boolean;
  readonly autoRemove: boolean;
  readonly networkMode: NetworkMode;
  // bridge: the network's name; container: the id of the container whose namespace it shares.
  readonly network?: string;
  readonly extraHosts?: readonly string[];
  readonly dns?: readonly string[];
  readonly dnsSearch?: readonly string[];
  readonly stopSignal: string;
  readonly stopTimeout: number;
  readonly log: LogConfig;
  // Absent in containers created before limits existed.
  readonly resources?: Resources;
  // Absent in containers created before restart policies existed: no restarts.
  readonly restart?: RestartPolicy;
  readonly healthcheck?: HealthConfig;
  readonly mounts?: readonly MountSpec[];
  readonly shmSizeBytes?: number;
  // Absent: the root filesystem is read-only.
  readonly writable?: WritableRoot;
  // Rows and columns of the client's terminal at create, so the first output is laid out
  // right before any resize can arrive.
  readonly consoleSize?: readonly [number, number];
  readonly security?: SecurityConfig;
  // --userns=auto: the container's own user namespace. Absent: the host's (--userns=host).
  readonly userns?: UsernsMapping;
}

export interface ContainerRecord {
  readonly id: string;
  readonly name: string;
  readonly config: ContainerConfig;
  readonly createdAt: string;
  readonly state: ContainerState;
  readonly pid: number;
  readonly monitorPid: number;
  readonly exitCode: number;
  readonly signal: number;
  readonly oomKilled: boolean;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly restartCount: number;
  readonly error: string;
  readonly stoppedByUser: boolean;
  // How far berthd has read the monitor's durable event file.
  readonly eventsOffset: number;
  // Output the monitor could not write (disk full or stalled), over the container's life.
  readonly logDroppedBytes: number;
  // OOM kills inside the container's cgroup in its current (or last) run, any process.
  readonly oomKills: number;
  // While restarting: when the monitor will start the container again.
  readonly nextRestartAt: string;
  readonly health: HealthState | undefined;
}

export type ContainerUpdate = Partial<
  Omit<ContainerRecord, 'id' | 'config' | 'createdAt' | 'health'>
> & { readonly health?: HealthState | null };

export interface ImageConfig {
  readonly env: readonly string[];
  readonly cmd: readonly string[];
  readonly entrypoint: readonly string[];
  readonly workdir: string;
  readonly user: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly stopSignal: string;
  // The image's HEALTHCHECK, if it has one.
  readonly healthcheck?: HealthConfig;
  // EXPOSE: "80/tcp", ...; what -P publishes.
  readonly exposedPorts?: readonly string[];
}

export interface ImageBlob {
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string;
}

// Where a layered image's bytes are: its manifest, config and layer blobs in the content
// store, and each layer's diff id (what its unpacked directory is known by).
export interface ImageMeta {
  readonly manifest: ImageBlob;
  readonly layers: readonly (ImageBlob & { readonly diffId: string })[];
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

export interface ImageRecord {
  // The hex of the config's digest, as docker's image ids are.
  readonly id: string;
  readonly repo: string;
  readonly tag: string;
  readonly createdAt: string;
  // Bytes of its layers unpacked.
  readonly size: number;
  readonly config: ImageConfig;
  // Undefined for an image made before layered images, whose root is one directory.
  readonly meta?: ImageMeta;
}

export interface EventRecord {
  readonly seq: number;
  readonly time: string;
  readonly timeNano: bigint;
  readonly type: 'container' | 'image' | 'daemon' | 'volume' | 'network';
  readonly action: string;
  readonly actorId: string;
  readonly attributes: Readonly<Record<string, string>>;
}

export type NewEvent = Omit<EventRecord, 'seq' | 'time' | 'timeNano'>;
