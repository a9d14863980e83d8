// docker and podman as peers of berth, set up by the bench for one run and torn down after
// it: a private dockerd (its own data root, exec root and socket under a temporary
// directory, no network unless a scenario needs a bridge) and podman with private storage,
// both given the same busybox root filesystem as berth's built-in image, imported as
// berthbench/busybox. Nothing of a docker or podman already on the host is used or touched,
// except podman's default bridge network (cni-podman0) when a scenario needs a bridge.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, rmdir, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { trackPid, untrackPid } from './berthd.ts';
import { makeBusyboxRootfs } from './bundle.ts';
import { withNetwork, type Engine, type LogLimits } from './engines.ts';
import { mountsUnder, processesMatching, sweepCgroups } from './host.ts';
import {
  bridgePorts,
  createBridge,
  deleteBridge,
  leases,
  linkExists,
  netnsNames,
  prefixInUse,
} from './netstate.ts';
import { pidAlive, run, runOk, waitUntil } from './proc.ts';
import {
  cgroupCpuNs,
  childPids,
  CpuGroup,
  cpuGroupDir,
  procCpuNs,
  procName,
  type ProcRef,
} from './sysstat.ts';

export const PEER_NAMES = ['docker', 'podman'] as const;
export type PeerName = (typeof PEER_NAMES)[number];
export const PEER_IMAGE = 'berthbench/busybox';

// Cgroups (absolute, under the root of every hierarchy) the peers' containers go in.
const DOCKER_CGROUP = 'berth-bench-docker';
const DOCKER_AGENT_CGROUP = 'berth-bench-docker-agent';
const PODMAN_CGROUP = 'berth-bench-podman';

const PACKAGES: Record<PeerName, { pkg: string; bins: string[] }> = {
  docker: { pkg: 'docker.io', bins: ['dockerd', 'containerd', 'containerd-shim-runc-v2'] },
  podman: { pkg: 'podman', bins: ['podman', 'conmon'] },
};

// Files and directories the peers create outside their temporary directory, whatever
// their options: removed at teardown when they did not exist before (`empty`: only if
// empty then, as others may use it meanwhile).
const HOST_TRACES: Record<PeerName, { path: string; empty?: boolean }[]> = {
  docker: [
    { path: '/etc/docker/key.json' },
    { path: '/run/docker' },
    { path: '/run/containerd/s', empty: true },
    { path: '/run/containerd', empty: true },
  ],
  podman: [
    { path: '/var/lib/containers' },
    { path: '/run/libpod' },
    { path: '/run/containers' },
    // podman's `container cleanup` runs runc with its default state root.
    { path: '/run/runc', empty: true },
    // podman system reset creates it.
    { path: join(homedir(), '.config', 'containers') },
  ],
};

// host-local's leases of podman's default network (the network is named podman).
const PODMAN_LEASES = '/var/lib/cni/networks/podman';

// What podman's default bridge network adds when a container runs on it: host-local's
// leases of the network `podman`, libcni's result cache, and the named netns.
const PODMAN_BRIDGE_TRACES: { path: string; empty?: boolean }[] = [
  { path: PODMAN_LEASES },
  { path: '/var/lib/cni/networks', empty: true },
  { path: '/var/lib/cni/results', empty: true },
  { path: '/var/lib/cni', empty: true },
  { path: '/run/netns', empty: true },
];

// docker's bridge, when a scenario needs one: the bench's own, so dockerd (with
// --iptables=false) touches no bridge or rule of the host's.
const DOCKER_BRIDGE_PREFIX = '10.217.0';

export interface PeerOptions {
  // Give docker and podman a bridge network (Engine.bridgeNetwork) besides --network none.
  readonly bridge?: boolean;
}

export function which(bin: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/usr/bin', '/sbin'];
  for (const d of dirs) {
    const p = join(d, bin);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

function hostLimit(name: string): number {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(name));
  const hard = line?.trim().split(/\s{2,}/)[2];
  return hard === undefined || hard === 'unlimited' ? 1048576 : Number(hard);
}

const tail = (s: string, n = 600) => s.trim().slice(-n);

// A process's state letter from /proc/<pid>/stat (R, S, Z, ...), 'gone' once reaped.
function procState(pid: number): string {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[0] ?? 'gone';
  } catch {
    return 'gone';
  }
}

// apt-get install of what is missing (once, with an update and a retry if the package
// lists are stale). Returns, per peer, why it is still unavailable.
export async function ensureInstalled(
  names: readonly PeerName[],
  log: (m: string) => void,
): Promise<Map<PeerName, string>> {
  const problems = new Map<PeerName, string>();
  const missing = names.filter((n) => PACKAGES[n].bins.some((b) => which(b) === undefined));
  if (missing.length === 0) return problems;
  const pkgs = missing.map((n) => PACKAGES[n].pkg);
  if (which('apt-get') === undefined) {
    for (const n of missing)
      problems.set(n, `not installed and no apt-get to install ${PACKAGES[n].pkg}`);
    return problems;
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    run('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], {
      env,
      timeoutMs: 15 * 60_000,
    });
  log(`installing ${pkgs.join(' ')} (apt-get install)`);
  let r = await install();
  if (r.code !== 0) {
    log(`apt-get install failed, running apt-get update and retrying`);
    await run('apt-get', ['update'], { env, timeoutMs: 10 * 60_000 });
    r = await install();
  }
  for (const n of missing) {
    const still = PACKAGES[n].bins.filter((b) => which(b) === undefined);
    if (still.length > 0) {
      problems.set(
        n,
        `could not install ${PACKAGES[n].pkg} (missing ${still.join(', ')}): ` +
          tail(r.stderr || r.stdout),
      );
    }
  }
  return problems;
}

// The busybox root filesystem berth builds for its built-in image, as a tar to import.
export async function busyboxTar(dir: string): Promise<string> {
  const root = join(dir, 'rootfs');
  await makeBusyboxRootfs(root);
  const tar = join(dir, 'busybox.tar');
  execFileSync('tar', ['-C', root, '-cf', tar, '.'], { stdio: 'ignore' });
  await rm(root, { recursive: true, force: true });
  return tar;
}

async function unmountAll(dir: string): Promise<string[]> {
  const left: string[] = [];
  for (const m of mountsUnder(dir).sort((a, b) => b.length - a.length)) {
    const r = await run('umount', [m]);
    if (r.code !== 0) await run('umount', ['-l', m]);
  }
  for (const m of mountsUnder(dir)) left.push(`mount ${m}`);
  return left;
}

function killMatching(marker: string, what: string): string[] {
  const out: string[] = [];
  for (const pid of processesMatching(marker)) {
    out.push(`killed ${procName(pid) ?? what} ${pid}`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  return out;
}

export interface Peer extends Engine {
  readonly name: PeerName;
  readonly dir: string;
  // Anything of the peer's containers still present.
  containersLeft(): Promise<string[]>;
  // Stops the peer and removes everything it made; returns what was left. Idempotent.
  stop(): Promise<string[]>;
  info(): Record<string, unknown>;
}

// Every container a peer has, as report lines ('docker: container ID').
async function containerLines(p: Engine): Promise<string[]> {
  const c = p.command(['ps', '-aq']);
  const r = await run(c.file, c.args, { env: c.env });
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((id) => `${p.name}: container ${id}`);
}

// Paths absent when it is made (those above; the pull scenario's skopeo cache): remove()
// takes away those that appeared since.
export class HostTraces {
  private readonly absent: { path: string; empty?: boolean }[];
  constructor(paths: readonly { path: string; empty?: boolean }[]) {
    this.absent = paths.filter((p) => !existsSync(p.path));
  }
  // Returns what it left in place.
  async remove(): Promise<string[]> {
    const left: string[] = [];
    for (const p of this.absent) {
      if (!p.empty) await rm(p.path, { recursive: true, force: true });
      else if (existsSync(p.path)) {
        await rmdir(p.path).catch(() => left.push(`${p.path} (created during the run, not empty)`));
      }
    }
    return left;
  }
}

// ---- docker ----

class DockerPeer implements Peer {
  readonly name = 'docker' as const;
  readonly image = PEER_IMAGE;
  readonly runFlags = ['--network', 'none'];
  readonly dir: string;
  version = 'unknown';
  private readonly cliPath: string;
  private readonly group: CpuGroup;
  private readonly traces: HostTraces;
  private proc: ChildProcess | undefined;
  private args: string[] = [];
  private stopped = false;
  private readonly wantBridge: boolean;
  // The Linux bridge the bench made for dockerd, until it is deleted.
  private madeBridge: string | undefined;
  bridgeNetwork: { bridge: string; subnet: string } | undefined;
  bridgeProblem: string | undefined;

  constructor(dir: string, group: CpuGroup, traces: HostTraces, wantBridge: boolean) {
    this.dir = dir;
    this.group = group;
    this.traces = traces;
    this.wantBridge = wantBridge;
    // The CLI of the same release as the daemon, when there is one.
    this.cliPath = existsSync('/usr/bin/docker')
      ? '/usr/bin/docker'
      : (which('docker') ?? 'docker');
  }

  get socket(): string {
    return join(this.dir, 'docker.sock');
  }

  command(args: readonly string[]) {
    const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: join(this.dir, 'cli') };
    delete env['DOCKER_HOST'];
    delete env['DOCKER_CONTEXT'];
    return { file: this.cliPath, args: ['-H', `unix://${this.socket}`, ...args], env };
  }

  logFlags(l: LogLimits): string[] {
    return ['--log-opt', `max-size=${l.maxSize}`, '--log-opt', `max-file=${l.maxFiles}`];
  }

  waitArgs(id: string): string[] {
    return ['wait', id];
  }

  rmArgs(ids: readonly string[]): string[] {
    return ['rm', '-f', ...ids];
  }

  agents(): ProcRef[] {
    const pid = this.proc?.pid;
    if (pid === undefined || !pidAlive(pid)) return [];
    const out: ProcRef[] = [{ name: 'dockerd', pid }];
    for (const c of childPids(pid)) {
      if (procName(c) === 'containerd') out.push({ name: 'containerd', pid: c });
    }
    return out;
  }

  helpers(): ProcRef[] {
    return processesMatching('containerd-shim', join(this.dir, 'exec')).map((pid) => ({
      name: 'containerd-shim-runc-v2',
      pid,
    }));
  }

  // dockerd runs in a CPU group of its own from its first instruction, so the group counts
  // dockerd, containerd, every shim and every runc they started; the shims' share is what
  // dockerd and containerd did not use.
  helperCpuNs(): number {
    const total = this.group.usageNs();
    const agents = this.agents().reduce((a, p) => a + (procCpuNs(p.pid) ?? 0), 0);
    return total - agents;
  }

  groupCpuNs(): number {
    return this.group.usageNs();
  }

  async start(tar: string, signal: AbortSignal): Promise<void> {
    await writeFile(join(this.dir, 'daemon.json'), '{}\n');
    if (this.wantBridge) await this.makeBridge();
    const nofile = hostLimit('Max open files');
    this.args = [
      '--config-file',
      join(this.dir, 'daemon.json'),
      '--host',
      `unix://${this.socket}`,
      '--data-root',
      join(this.dir, 'data'),
      '--exec-root',
      join(this.dir, 'exec'),
      '--pidfile',
      join(this.dir, 'docker.pid'),
      '--bridge',
      this.madeBridge ?? 'none',
      '--iptables=false',
      '--ip6tables=false',
      '--ip-forward=false',
      '--ip-masq=false',
      '--userland-proxy=false',
      '--default-ulimit',
      `nofile=${nofile}:${nofile}`,
      '--log-driver',
      'json-file',
      '--exec-opt',
      'native.cgroupdriver=cgroupfs',
      '--cgroup-parent',
      `/${DOCKER_CGROUP}`,
    ];
    const p = this.spawnDockerd();
    const deadline = Date.now() + 60_000;
    for (;;) {
      signal.throwIfAborted();
      if (p.exitCode !== null || p.signalCode !== null) {
        throw new Error(`dockerd exited (${p.exitCode ?? p.signalCode}): ${this.daemonLog()}`);
      }
      const r = await run(
        this.cliPath,
        this.command(['version', '-f', '{{.Server.Version}}']).args,
        {
          env: this.command([]).env,
          timeoutMs: 5000,
        },
      );
      if (r.code === 0) {
        this.version = r.stdout.trim();
        break;
      }
      if (Date.now() > deadline) throw new Error(`dockerd not ready in 60 s: ${this.daemonLog()}`);
      await sleep(200);
    }
    const c = this.command(['import', tar, PEER_IMAGE]);
    await runOk(c.file, c.args, { env: c.env, timeoutMs: 120_000 });
    if (this.madeBridge) {
      const net = { bridge: this.madeBridge, subnet: `${DOCKER_BRIDGE_PREFIX}.0/24` };
      this.bridgeProblem = await probe(this);
      if (this.bridgeProblem === undefined) this.bridgeNetwork = net;
    }
  }

  // dockerd (its arguments from start()) in the agents' CPU group from its first
  // instruction, its output appended to dockerd.log.
  private spawnDockerd(): ChildProcess {
    const dockerd = which('dockerd');
    if (!dockerd) throw new Error('dockerd not found');
    const w = this.group.wrap(dockerd, this.args);
    const fd = openSync(this.logFile, 'a');
    // Detached: its own process group, so a terminal ^C reaches only the bench.
    const p = spawn(w.file, w.args, { stdio: ['ignore', fd, fd], detached: true });
    closeSync(fd);
    this.proc = p;
    const pid = p.pid;
    if (pid !== undefined) {
      trackPid(pid);
      p.once('exit', () => untrackPid(pid));
    }
    return p;
  }

  private get logFile(): string {
    return join(this.dir, 'dockerd.log');
  }

  // ---- a crash and a restart on the same state (readopt) ----

  // live-restore on or off: daemon.json, then a reload (SIGHUP; live-restore is one of the
  // options dockerd reloads). Resolves once `docker info` says so.
  async setLiveRestore(on: boolean): Promise<void> {
    // A reload only changes the keys the file has: "off" must be said.
    await writeFile(join(this.dir, 'daemon.json'), `{ "live-restore": ${on} }\n`);
    const pid = this.proc?.pid;
    if (pid === undefined || !pidAlive(pid)) return;
    process.kill(pid, 'SIGHUP');
    const c = this.command(['info', '--format', '{{.LiveRestoreEnabled}}']);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await run(c.file, c.args, { env: c.env, timeoutMs: 10_000 });
      if (r.stdout.trim() === String(on)) return;
      if (Date.now() > deadline) {
        throw new Error(`dockerd did not reload live-restore=${on}: ${tail(r.stderr || r.stdout)}`);
      }
      await sleep(100);
    }
  }

  // kill -9 of dockerd by pid; resolves once it has exited. Its containerd gets SIGKILL
  // too (dockerd starts it with a parent-death signal) and lingers as a zombie until
  // init reaps it, which here takes a while: a zombie's pid still looks alive to the next
  // dockerd, which would then wait for a socket nobody serves and give up. So its pid file
  // goes once it is dead, and the next dockerd starts a new containerd, as after a crash.
  async kill9(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
    const pidFile = join(this.dir, 'exec', 'containerd', 'containerd.pid');
    let pid = NaN;
    try {
      pid = Number(readFileSync(pidFile, 'utf8').trim());
    } catch {
      return;
    }
    const dead = () => !Number.isInteger(pid) || pid <= 0 || ['gone', 'Z'].includes(procState(pid));
    await waitUntil(dead, 5000);
    if (dead()) await rm(pidFile, { force: true });
  }

  // A new dockerd with the same arguments, not waited for: the time just before the spawn
  // (process.hrtime.bigint()) and where its output starts in dockerd.log (logSince()).
  respawn(): { t0: bigint; logMark: number } {
    const pid = this.proc?.pid;
    if (pid !== undefined && pidAlive(pid)) throw new Error('dockerd still running');
    const logMark = existsSync(this.logFile) ? statSync(this.logFile).size : 0;
    const t0 = process.hrtime.bigint();
    this.spawnDockerd();
    return { t0, logMark };
  }

  logSince(mark: number): string {
    try {
      return readFileSync(this.logFile).subarray(mark).toString();
    } catch {
      return '';
    }
  }

  // Whether the dockerd last spawned has exited.
  get exited(): boolean {
    const p = this.proc;
    return !p || p.exitCode !== null || p.signalCode !== null;
  }

  // dockerd keeps its containers' netns under its exec root. libnetwork unmounts one when
  // its sandbox goes and deletes the empty file in a pass every 60 s: only a mount holds a
  // namespace.
  networkLeftovers(): Promise<string[]> {
    const out = mountsUnder(join(this.dir, 'exec', 'netns')).map((m) => `docker: netns ${m}`);
    if (this.bridgeNetwork) {
      const b = this.bridgeNetwork.bridge;
      for (const p of bridgePorts(b)) out.push(`docker: port ${p} on bridge ${b}`);
    }
    return Promise.resolve(out);
  }

  // A bridge of the bench's own for dockerd's default network (`--bridge NAME` takes its
  // address as the network's gateway and subnet). No masquerading, no forwarding: the
  // containers need no traffic beyond the bridge.
  private async makeBridge(): Promise<void> {
    if (await prefixInUse(DOCKER_BRIDGE_PREFIX)) {
      this.bridgeProblem = `${DOCKER_BRIDGE_PREFIX}.0/24 is in use on this host`;
      return;
    }
    const name = `bbdock${randomBytes(3).toString('hex')}`;
    try {
      await createBridge(name, `${DOCKER_BRIDGE_PREFIX}.1/24`);
      this.madeBridge = name;
    } catch (e) {
      this.bridgeProblem = `cannot make bridge ${name}: ${e instanceof Error ? e.message : String(e)}`;
    }
  }

  private daemonLog(): string {
    try {
      return tail(readFileSync(this.logFile, 'utf8'), 1500);
    } catch {
      return '';
    }
  }

  async containersLeft(): Promise<string[]> {
    if (!this.proc?.pid || !pidAlive(this.proc.pid)) return [];
    return containerLines(this);
  }

  async stop(): Promise<string[]> {
    if (this.stopped) return [];
    this.stopped = true;
    const left: string[] = [];
    const p = this.proc;
    if (p?.pid !== undefined && p.exitCode === null && p.signalCode === null) {
      const ids = (await this.containersLeft()).map((l) => l.split(' ').pop() ?? '');
      if (ids.length > 0) {
        const c = this.command(['rm', '-f', ...ids]);
        await run(c.file, c.args, { env: c.env, timeoutMs: 120_000 });
      }
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      // An unref'd timer, so a prompt exit does not keep the bench alive for the full 30 s.
      const t = await Promise.race([
        exited.then(() => 'exited'),
        sleep(30_000, 'timeout', { ref: false }),
      ]);
      if (t === 'timeout') {
        left.push(`dockerd did not stop in 30 s: killed`);
        p.kill('SIGKILL');
        await exited;
      }
    }
    // containerd and shims started by this dockerd carry its exec root on their command line.
    left.push(...killMatching(join(this.dir, 'exec'), 'process').map((l) => `docker: ${l}`));
    await sleep(100);
    left.push(...(await unmountAll(this.dir)).map((l) => `docker: ${l}`));
    if (mountsUnder(this.dir).length === 0) await rm(this.dir, { recursive: true, force: true });
    for (const g of [...sweepCgroups(DOCKER_CGROUP), ...this.group.remove()]) {
      left.push(`docker: cgroup still busy: ${g}`);
    }
    if (this.madeBridge) {
      left.push(...(await deleteBridge(this.madeBridge)).map((l) => `docker: ${l}`));
      this.madeBridge = undefined;
    }
    left.push(...(await this.traces.remove()).map((l) => `${this.name}: ${l}`));
    return left;
  }

  info(): Record<string, unknown> {
    return {
      version: this.version,
      cli: this.cliPath,
      dir: this.dir,
      ...(this.bridgeNetwork ? { bridgeNetwork: this.bridgeNetwork } : {}),
      ...(this.bridgeProblem ? { bridgeProblem: this.bridgeProblem } : {}),
    };
  }
}

// A peer whose daemon the bench can kill -9 and start again on the same state: docker.
export type RestartablePeer = Pick<
  DockerPeer,
  'setLiveRestore' | 'kill9' | 'respawn' | 'logSince' | 'exited' | 'socket'
> &
  Peer;

export function asRestartable(e: Engine): RestartablePeer | undefined {
  return e instanceof DockerPeer ? e : undefined;
}

// ---- podman ----

class PodmanPeer implements Peer {
  readonly name = 'podman' as const;
  readonly image = PEER_IMAGE;
  readonly dir: string;
  version = 'unknown';
  runFlags: string[] = [];
  bridgeNetwork: { bridge: string; subnet: string } | undefined;
  bridgeProblem: string | undefined;
  private readonly bin: string;
  private readonly traces: HostTraces;
  private readonly wantBridge: boolean;
  // podman's default bridge, when this run brought it into being (podman never deletes it).
  private madeBridge: string | undefined;
  private netBefore = new Set<string>();
  private stopped = false;

  constructor(dir: string, bin: string, traces: HostTraces, wantBridge: boolean) {
    this.dir = dir;
    this.bin = bin;
    this.traces = traces;
    this.wantBridge = wantBridge;
  }

  private get globals(): string[] {
    return [
      '--root',
      join(this.dir, 'root'),
      '--runroot',
      join(this.dir, 'run'),
      '--tmpdir',
      join(this.dir, 'tmp'),
      '--runtime',
      'runc',
      '--cgroup-manager',
      'cgroupfs',
      '--events-backend',
      'file',
    ];
  }

  command(args: readonly string[]) {
    const env = { ...process.env, CONTAINERS_CONF: join(this.dir, 'containers.conf') };
    return { file: this.bin, args: [...this.globals, ...args], env };
  }

  // k8s-file in podman 4 has a max-size that truncates and no max-file: no limits given.
  logFlags(_l: LogLimits): string[] {
    return [];
  }

  // podman wait polls (250 ms by default): poll often, so the wait ends soon after the exit.
  waitArgs(id: string): string[] {
    return ['wait', '--interval', '20ms', id];
  }

  rmArgs(ids: readonly string[]): string[] {
    return ['rm', '-f', '-t', '0', ...ids];
  }

  agents(): ProcRef[] {
    return [];
  }

  // Every process in the conmon group: the conmons, and their exit commands while they run.
  helpers(): ProcRef[] {
    let pids: number[];
    try {
      pids = readFileSync(join(cpuGroupDir(`${PODMAN_CGROUP}/conmon`), 'cgroup.procs'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map(Number);
    } catch {
      return [];
    }
    return pids.map((pid) => ({ name: procName(pid) ?? 'conmon', pid }));
  }

  // podman moves each conmon into <cgroup-parent>/conmon before it starts runc; its exit
  // command (podman container cleanup) runs there too.
  helperCpuNs(): number {
    return cgroupCpuNs(`${PODMAN_CGROUP}/conmon`);
  }

  async start(tar: string, signal: AbortSignal): Promise<void> {
    const nofile = hostLimit('Max open files');
    const conf = [
      '[containers]',
      'log_driver = "k8s-file"',
      '[network]',
      `network_config_dir = "${join(this.dir, 'networks')}"`,
      '[engine]',
      `tmp_dir = "${join(this.dir, 'tmp')}"`,
      'events_logger = "file"',
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      '',
    ].join('\n');
    await writeFile(join(this.dir, 'containers.conf'), conf);
    const v = this.command(['version', '--format', '{{.Client.Version}}']);
    this.version = (await runOk(v.file, v.args, { env: v.env })).stdout.trim();
    signal.throwIfAborted();
    const imp = this.command(['import', tar, PEER_IMAGE]);
    await runOk(imp.file, imp.args, { env: imp.env, timeoutMs: 120_000 });
    // podman asks runc for nofile and nproc limits of 1048576 unless told otherwise, and
    // this host cannot raise them: ask for what podman's own processes have. The hard
    // nproc podman's children inherit is not always the shell's: try from the highest.
    const nprocs = [
      ...new Set(
        [hostLimit('Max processes'), 32768, 4096].filter((n) => n <= hostLimit('Max processes')),
      ),
    ];
    let why = '';
    for (const nproc of nprocs) {
      signal.throwIfAborted();
      const flags = [
        '--network',
        'none',
        '--cgroup-parent',
        `/${PODMAN_CGROUP}`,
        '--log-driver',
        'k8s-file',
        '--ulimit',
        `nofile=${nofile}:${nofile}`,
        '--ulimit',
        `nproc=${nproc}:${nproc}`,
      ];
      const c = this.command(['run', '--rm', ...flags, PEER_IMAGE, 'true']);
      const r = await run(c.file, c.args, { env: c.env, timeoutMs: 60_000 });
      if (r.code === 0) {
        this.runFlags = flags;
        if (this.wantBridge) await this.setUpBridge();
        return;
      }
      why = tail(r.stderr);
    }
    throw new Error(`podman cannot run a container here: ${why}`);
  }

  // The network is shared with any other podman on the host: what was there before the
  // bench's first container on it is not the bench's.
  private netState(bridge: string): Set<string> {
    return new Set([
      ...bridgePorts(bridge).map((p) => `port ${p} on bridge ${bridge}`),
      ...leases(PODMAN_LEASES).map((ip) => `lease ${ip} in ${PODMAN_LEASES}`),
      // podman 4 names them netns-<uuid>.
      ...netnsNames()
        .filter((n) => n.startsWith('netns-'))
        .map((n) => `netns ${n}`),
    ]);
  }

  networkLeftovers(): Promise<string[]> {
    if (!this.bridgeNetwork) return Promise.resolve([]);
    const before = this.netBefore;
    return Promise.resolve(
      [...this.netState(this.bridgeNetwork.bridge)]
        .filter((l) => !before.has(l))
        .map((l) => `podman: ${l}`),
    );
  }

  // podman's default network (`podman`, CNI, the bridge cni-podman0 and 10.88.0.0/16 unless
  // the host configured it otherwise): the same for every podman on the host, whatever its
  // storage. podman makes the bridge on first use and keeps it; so does the bench only when
  // it was there before.
  private async setUpBridge(): Promise<void> {
    const c = this.command([
      'network',
      'inspect',
      'podman',
      '--format',
      '{{.NetworkInterface}} {{range .Subnets}}{{.Subnet}} {{end}}',
    ]);
    const r = await run(c.file, c.args, { env: c.env });
    const [bridge, subnet] = r.stdout.trim().split(/\s+/);
    if (r.code !== 0 || !bridge || !subnet) {
      this.bridgeProblem = `podman network inspect podman: ${tail(r.stderr || r.stdout, 300)}`;
      return;
    }
    if (!linkExists(bridge)) this.madeBridge = bridge;
    this.netBefore = this.netState(bridge);
    const net = { bridge, subnet };
    this.bridgeProblem = await probe(this);
    if (this.bridgeProblem === undefined) this.bridgeNetwork = net;
  }

  async containersLeft(): Promise<string[]> {
    if (!existsSync(join(this.dir, 'root'))) return [];
    return containerLines(this);
  }

  async stop(): Promise<string[]> {
    if (this.stopped) return [];
    this.stopped = true;
    const left: string[] = [];
    if (existsSync(join(this.dir, 'root'))) {
      const rmAll = this.command(['rm', '-af', '-t', '0']);
      await run(rmAll.file, rmAll.args, { env: rmAll.env, timeoutMs: 120_000 });
      // Removes containers, images and the storage (only this run's: --root, --runroot).
      const reset = this.command(['system', 'reset', '-f']);
      const r = await run(reset.file, reset.args, { env: reset.env, timeoutMs: 120_000 });
      if (r.code !== 0) left.push(`podman: system reset failed: ${tail(r.stderr, 300)}`);
    }
    left.push(...killMatching(this.dir, 'process').map((l) => `podman: ${l}`));
    left.push(...(await unmountAll(this.dir)).map((l) => `podman: ${l}`));
    if (mountsUnder(this.dir).length === 0) await rm(this.dir, { recursive: true, force: true });
    for (const g of sweepCgroups(PODMAN_CGROUP)) left.push(`podman: cgroup still busy: ${g}`);
    if (this.madeBridge) {
      left.push(...(await deleteBridge(this.madeBridge)).map((l) => `podman: ${l}`));
      this.madeBridge = undefined;
    }
    left.push(...(await this.traces.remove()).map((l) => `${this.name}: ${l}`));
    return left;
  }

  info(): Record<string, unknown> {
    return {
      version: this.version,
      runFlags: this.runFlags,
      dir: this.dir,
      ...(this.bridgeNetwork ? { bridgeNetwork: this.bridgeNetwork } : {}),
      ...(this.bridgeProblem ? { bridgeProblem: this.bridgeProblem } : {}),
    };
  }
}

// One `run --rm` on the bridge network, untimed: undefined if it works, else why not.
async function probe(p: Engine): Promise<string | undefined> {
  const c = p.command(['run', '--rm', ...withNetwork(p.runFlags, 'bridge'), p.image, 'true']);
  const r = await run(c.file, c.args, { env: c.env, timeoutMs: 60_000 });
  return r.code === 0 ? undefined : `run --network bridge failed: ${tail(r.stderr, 300)}`;
}

// ---- set-up of the selected peers ----

export interface PeerSet {
  readonly peers: Peer[];
  // Peers that could not be set up, and why.
  readonly skipped: Map<PeerName, string>;
  stop(): Promise<string[]>;
}

export async function setupPeers(
  names: readonly PeerName[],
  signal: AbortSignal,
  log: (m: string) => void,
  o: PeerOptions = {},
): Promise<PeerSet> {
  const peers: Peer[] = [];
  const skipped = await ensureInstalled(names, log);
  const dirs: string[] = [];
  const set: PeerSet = {
    peers,
    skipped,
    async stop() {
      const left: string[] = [];
      for (const p of peers.splice(0)) {
        log(`stopping ${p.name}`);
        left.push(...(await p.containersLeft()));
        left.push(
          ...(await p.stop().catch((e: unknown) => [`${p.name}: stop failed: ${String(e)}`])),
        );
      }
      for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
      return left;
    },
  };
  const wanted = names.filter((n) => !skipped.has(n));
  if (wanted.length === 0) return set;
  const shared = await mkdtemp('/tmp/bb-peers-');
  dirs.push(shared);
  const tar = await busyboxTar(shared);
  for (const name of wanted) {
    if (signal.aborted) break;
    // Short paths: the sockets of the daemon and of containerd live under the directory.
    const dir = await mkdtemp(`/tmp/bb-${name}-`);
    let peer: Peer & { start(tar: string, signal: AbortSignal): Promise<void> };
    if (name === 'docker') {
      const traces = new HostTraces(HOST_TRACES.docker);
      const group = CpuGroup.create(DOCKER_AGENT_CGROUP);
      peer = new DockerPeer(dir, group, traces, o.bridge === true);
    } else {
      const traces = new HostTraces([
        ...HOST_TRACES.podman,
        ...(o.bridge ? PODMAN_BRIDGE_TRACES : []),
      ]);
      peer = new PodmanPeer(dir, which('podman') ?? 'podman', traces, o.bridge === true);
    }
    log(`setting up ${name} in ${dir}`);
    try {
      await mkdir(dir, { recursive: true });
      await peer.start(tar, signal);
      peers.push(peer);
      log(`${name} ${peer.version} ready`);
      if (peer.bridgeProblem) log(`${name}: no bridge network: ${peer.bridgeProblem}`);
    } catch (e) {
      const why = signal.aborted ? 'interrupted' : e instanceof Error ? e.message : String(e);
      skipped.set(name, why);
      const left = await peer.stop().catch((err: unknown) => [String(err)]);
      if (left.length > 0) skipped.set(name, `${why}; left behind: ${left.join('; ')}`);
    }
  }
  return set;
}
