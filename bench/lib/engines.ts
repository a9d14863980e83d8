// One face for the container engines a scenario compares: berth (the bench's berthd) and
// the peers docker and podman (peers.ts). Each is driven through its own CLI, the way a
// user or a script would, and says which host processes work for its containers.
import { BenchDaemon } from './berthd.ts';
import { runOk, type ProcOptions, type ProcResult } from './proc.ts';
import type { CpuGroup, ProcRef } from './sysstat.ts';

export interface Cmd {
  readonly file: string;
  readonly args: string[];
  readonly env: NodeJS.ProcessEnv;
}

export interface LogLimits {
  // Docker's --log-opt values: max-size per file, number of files.
  readonly maxSize: string;
  readonly maxFiles: number;
}

export interface Engine {
  readonly name: 'berth' | 'docker' | 'podman';
  readonly version: string;
  // The busybox image (the same root filesystem for all).
  readonly image: string;
  // Flags every container of the bench gets on create/run (no network, limits).
  readonly runFlags: readonly string[];
  // The daemon's API socket (berthd, dockerd), for bulk set-up without a CLI start-up per
  // container (bulk.ts); none for podman.
  readonly socket?: string;
  // The engine's default bridge network, when there is one for the bench's containers: its
  // Linux bridge and subnet. runFlagsOn(e, 'bridge') puts a container on it.
  readonly bridgeNetwork?: { readonly bridge: string; readonly subnet: string } | undefined;
  // Why there is no bridgeNetwork when one was asked for.
  readonly bridgeProblem?: string | undefined;
  // What its containers' networking has left on the host now (netns, ports on its bridge,
  // leases): empty once every container is gone and cleaned up after.
  networkLeftovers?(): Promise<string[]>;
  // argv of the engine's CLI.
  command(args: readonly string[]): Cmd;
  // create/run flags that keep a log history whole within these limits (as far as the
  // engine's log driver can).
  logFlags(l: LogLimits): string[];
  waitArgs(id: string): string[];
  // Removes running containers too.
  rmArgs(ids: readonly string[]): string[];
  // Long-lived processes of the engine itself: berthd; dockerd and containerd; none for
  // podman, which has no daemon.
  agents(): ProcRef[];
  // Per-container processes outside the container: berth-monitor, containerd-shim, conmon.
  helpers(): ProcRef[];
  // Cumulative CPU time (ns) of the helpers, including exited ones and the short-lived
  // processes they start (runc, podman's clean-up), from a cgroup.
  helperCpuNs(): number;
  // Cumulative CPU time (ns) of the agents and helpers together, when one cgroup holds them
  // all (docker): with the agents' own CPU read precisely, it gives the helpers' precisely.
  groupCpuNs?(): number;
}

export function cli(
  e: Engine,
  args: readonly string[],
  opts: ProcOptions = {},
): Promise<ProcResult> {
  const c = e.command(args);
  return runOk(c.file, c.args, { env: c.env, ...opts });
}

// The CLI run in a CPU group of the bench's, so that its CPU time, children included, can
// be read from the group.
export function cliInGroup(
  e: Engine,
  group: CpuGroup,
  args: readonly string[],
  opts: ProcOptions = {},
): Promise<ProcResult> {
  const c = e.command(args);
  const w = group.wrap(c.file, c.args);
  return runOk(w.file, w.args, { env: c.env, ...opts });
}

export interface ContainerTimes {
  readonly startedAt: number;
  readonly finishedAt: number;
  readonly exitCode: number;
  readonly droppedBytes: number | undefined;
}

// Start and finish times as the engine recorded them (ms since the epoch).
export async function inspectTimes(e: Engine, id: string): Promise<ContainerTimes> {
  const r = await cli(e, ['inspect', id], { stdout: 'all' });
  const doc = (JSON.parse(r.stdout) as Record<string, unknown>[])[0] ?? {};
  const state = (doc['State'] ?? {}) as Record<string, unknown>;
  const lc = (doc['LogConfig'] ?? {}) as Record<string, unknown>;
  const dropped = lc['DroppedBytes'];
  return {
    startedAt: Date.parse(String(state['StartedAt'])),
    finishedAt: Date.parse(String(state['FinishedAt'])),
    exitCode: Number(state['ExitCode']),
    droppedBytes: typeof dropped === 'number' ? dropped : undefined,
  };
}

export function berthEngine(d: BenchDaemon, version: string): Engine {
  return {
    name: 'berth',
    version,
    image: 'busybox',
    // berth puts containers on its bridge unless told otherwise; the peers' containers
    // have no network in the bench, and bare runc's none but lo.
    runFlags: ['--network', 'none'],
    socket: d.socket,
    bridgeNetwork: { bridge: d.bridge, subnet: d.subnet },
    networkLeftovers: async () => [...d.networkLeftovers(), ...(await d.netnsLeftovers())],
    command: (args) => ({ file: process.execPath, args: d.cliArgs(args), env: d.env }),
    logFlags: (l) => ['--log-opt', `max-size=${l.maxSize}`, '--log-opt', `max-file=${l.maxFiles}`],
    waitArgs: (id) => ['wait', id],
    rmArgs: (ids) => ['rm', '-f', ...ids],
    agents: () => (d.pid === undefined ? [] : [{ name: 'berthd', pid: d.pid }]),
    helpers: () => d.monitors(),
    helperCpuNs: () => d.monitorCpuNs(),
  };
}

// berthd for a scenario that compares engines, with its Engine face.
export async function startBerth(cgroupParent: string): Promise<{ d: BenchDaemon; e: Engine }> {
  const d = await BenchDaemon.start(cgroupParent);
  try {
    const v = await d.cliOk(['version']);
    const m = /berthd (\S+)/.exec(v.stdout);
    return { d, e: berthEngine(d, m?.[1] ?? 'unknown') };
  } catch (err) {
    await d.stop();
    throw err;
  }
}

// Removes every container the engine has; returns their ids.
export async function removeAll(e: Engine): Promise<string[]> {
  const r = await cli(e, ['ps', '-aq'], { stdout: 'all' }).catch(() => undefined);
  const ids = r?.stdout.split('\n').filter(Boolean) ?? [];
  if (ids.length > 0) await cli(e, e.rmArgs(ids), { timeoutMs: 300_000 }).catch(() => undefined);
  return ids;
}

// Run flags with `--network` set to this network instead.
export function withNetwork(runFlags: readonly string[], network: string): string[] {
  const flags = [...runFlags];
  const i = flags.indexOf('--network');
  if (i >= 0 && i + 1 < flags.length) flags[i + 1] = network;
  else flags.push('--network', network);
  return flags;
}

// runFlags with the container on the engine's bridge network (`--network bridge`: what
// docker and podman call their default network, and berth's default) or on none.
export function runFlagsOn(e: Engine, network: 'bridge' | 'none'): string[] {
  if (network === 'bridge' && !e.bridgeNetwork) {
    throw new Error(`${e.name}: no bridge network set up for the bench`);
  }
  return withNetwork(e.runFlags, network);
}

// The id a create or run -d printed.
export function printedId(stdout: string): string {
  const id = stdout.trim().split('\n').pop()?.trim() ?? '';
  if (!/^[0-9a-f]{12,64}$/.test(id)) throw new Error(`no container id in "${stdout.trim()}"`);
  return id;
}
