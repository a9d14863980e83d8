// A berthd for the bench: its own data root, run root and cgroup parent under a short
// temporary directory, started detached (so a terminal ^C reaches the bench, which then
// stops it in order) and stopped by pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  cgroupLeftovers,
  isImageRoot,
  mountsUnder,
  processesMatching,
  runcDeleteAll,
  runcStateLeftovers,
  sweepCgroups,
} from './host.ts';
import { removePublishedPortsRule } from '../../src/network/netns.ts';
import { bridgePorts, leases, netnsNames } from './netstate.ts';
import { unixRequest } from './unix-http.ts';
import { pidAlive, run, runOk, type ProcOptions, type ProcResult } from './proc.ts';
import { cgroupCpuNs, type ProcRef } from './sysstat.ts';

export const REPO = resolve(import.meta.dirname, '..', '..', '..');
export const MAIN = join(REPO, 'dist', 'src', 'main.js');
export const MONITOR = join(REPO, 'monitor', 'berth-monitor');

const LOG_TAIL = 8000;

// Daemons still running (berthd, a peer's dockerd), for a forced exit that cannot wait for
// an orderly stop.
const running = new Set<number>();

export function trackPid(pid: number): void {
  running.add(pid);
}

export function untrackPid(pid: number): void {
  running.delete(pid);
}

export function killRegistered(): void {
  for (const pid of running) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

export class BenchDaemon {
  readonly dir: string;
  readonly root: string;
  readonly runRoot: string;
  // A default network of its own, so the bench never shares berth0 (or its addresses)
  // with a berthd that serves the host, and leaves nothing behind.
  readonly bridge = `bb${Math.floor(Math.random() * 0xffffff)
    .toString(16)
    .padStart(6, '0')}`;
  readonly subnet = '10.216.0.0/16';
  readonly socket: string;
  readonly cgroupParent: string;
  private proc: ChildProcess | undefined;
  private logs = '';
  // The netns of every container this berthd has put on a network (berth-<short id>), read
  // from its event journal up to eventSeq: other berthds on the host make netns too.
  private readonly attachedNetns = new Set<string>();
  private eventSeq = 0;

  private constructor(dir: string, cgroupParent: string) {
    this.dir = dir;
    this.root = join(dir, 'data');
    this.runRoot = join(dir, 'run');
    this.socket = join(this.runRoot, 'berth.sock');
    this.cgroupParent = cgroupParent;
  }

  // Unix socket paths are short: the run root must stay well under 28 characters.
  static async start(cgroupParent: string): Promise<BenchDaemon> {
    for (const f of [MAIN, MONITOR]) {
      if (!existsSync(f)) throw new Error(`missing ${f}: run \`npm run build\` first`);
    }
    const d = new BenchDaemon(await mkdtemp('/tmp/bb-'), cgroupParent);
    try {
      await d.spawn();
    } catch (e) {
      await d.stop();
      throw e;
    }
    return d;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get env(): NodeJS.ProcessEnv {
    return { ...process.env, BERTH_HOST: `unix://${this.socket}` };
  }

  // argv for the CLI, as test/helpers/daemon.ts runs it.
  cliArgs(args: readonly string[]): string[] {
    return ['--', MAIN, ...args];
  }

  cli(args: readonly string[], opts: ProcOptions = {}): Promise<ProcResult> {
    return run(process.execPath, this.cliArgs(args), { env: this.env, ...opts });
  }

  cliOk(args: readonly string[], opts: ProcOptions = {}): Promise<ProcResult> {
    return runOk(process.execPath, this.cliArgs(args), { env: this.env, ...opts });
  }

  // The group berthd puts every monitor in (src/engine/containers.ts).
  get monitorGroup(): string {
    return `${this.cgroupParent}.monitors`;
  }

  // CPU time of all monitors so far, and of the runc processes they started.
  monitorCpuNs(): number {
    return cgroupCpuNs(this.monitorGroup);
  }

  monitors(): ProcRef[] {
    return processesMatching('berth-monitor', this.runRoot).map((pid) => ({
      name: 'berth-monitor',
      pid,
    }));
  }

  // Spawns berthd on this daemon's roots; does not wait for it.
  private launch(): ChildProcess {
    const p = spawn(
      process.execPath,
      [
        '--',
        MAIN,
        'daemon',
        '--root',
        this.root,
        '--run-root',
        this.runRoot,
        '--cgroup-parent',
        this.cgroupParent,
        '--bridge-name',
        this.bridge,
        '--bridge-subnet',
        this.subnet,
        '--log-level',
        'info',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    this.proc = p;
    const pid = p.pid;
    if (pid !== undefined) {
      running.add(pid);
      p.once('exit', () => running.delete(pid));
    }
    const keep = (b: Buffer) => (this.logs = (this.logs + b.toString()).slice(-LOG_TAIL));
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    return p;
  }

  private async spawn(): Promise<void> {
    const p = this.launch();
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (p.exitCode !== null || p.signalCode !== null) {
        throw new Error(`berthd exited (${p.exitCode ?? p.signalCode}): ${this.logs}`);
      }
      if (this.logs.includes('berthd ready')) return;
      await sleep(20);
    }
    throw new Error(`berthd did not become ready in 15 s: ${this.logs}`);
  }

  // kill -9 of berthd by pid, as a crash would end it: containers and monitors stay.
  // Resolves once it has exited.
  async kill9(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  // A new berthd on the same roots after kill9(), not waited for: returns the time just
  // before the spawn (process.hrtime.bigint()). Its log starts afresh (log).
  respawn(): bigint {
    if (this.pid !== undefined && pidAlive(this.pid)) throw new Error('berthd still running');
    this.logs = '';
    const t0 = process.hrtime.bigint();
    this.launch();
    return t0;
  }

  // Whether the berthd last spawned has exited.
  get exited(): boolean {
    const p = this.proc;
    return !p || p.exitCode !== null || p.signalCode !== null;
  }

  // What berth has left for containers that should all be gone.
  leftovers(): string[] {
    const out = runcStateLeftovers(join(this.runRoot, 'runc'));
    for (const dir of [join(this.runRoot, 'c'), join(this.root, 'containers')]) {
      if (existsSync(dir)) for (const e of readdirSync(dir)) out.push(`dir ${join(dir, e)}`);
    }
    for (const pid of processesMatching('berth-monitor', this.runRoot)) {
      out.push(`monitor process ${pid}`);
    }
    for (const g of cgroupLeftovers(this.cgroupParent)) out.push(`cgroup ${g}`);
    for (const m of mountsUnder(this.dir)) if (!isImageRoot(m)) out.push(`mount ${m}`);
    out.push(...this.networkLeftovers());
    return out;
  }

  // What a container on a bridge leaves if its detach did not finish (nothing with
  // --network none). berthd keeps CNI results and leases under its run root; its netns
  // are netnsLeftovers().
  networkLeftovers(): string[] {
    const out: string[] = [];
    const cni = join(this.runRoot, 'cni');
    for (const p of bridgePorts(this.bridge)) out.push(`port ${p} on bridge ${this.bridge}`);
    for (const n of listDir(join(cni, 'ipam'))) {
      for (const ip of leases(join(cni, 'ipam', n))) out.push(`lease ${ip} on network ${n}`);
    }
    for (const f of listDir(join(cni, 'results'))) out.push(`CNI result ${f}`);
    return out;
  }

  // The netns of this berthd's containers still present. Reads the journal's network
  // connect events since the last call while berthd runs; after that, what it read.
  async netnsLeftovers(): Promise<string[]> {
    if (this.pid !== undefined && pidAlive(this.pid)) {
      const r = await unixRequest(this.socket, `/v1/events?since=${this.eventSeq}`, {
        agent: false,
      }).catch(() => undefined);
      for (const line of r?.status === 200 ? r.body.split('\n') : []) {
        if (line === '') continue;
        const e = JSON.parse(line) as {
          seq?: number;
          type?: string;
          action?: string;
          attributes?: Record<string, string>;
        };
        if (typeof e.seq === 'number') this.eventSeq = Math.max(this.eventSeq, e.seq);
        const id = e.attributes?.['container'];
        if (e.type === 'network' && e.action === 'connect' && id) {
          this.attachedNetns.add(`berth-${id.slice(0, 12)}`);
        }
      }
    }
    const present = new Set(netnsNames());
    return [...this.attachedNetns].filter((n) => present.has(n)).map((n) => `netns ${n}`);
  }

  // Stops berthd (SIGTERM, then SIGKILL after 10 s), then removes by force anything left:
  // monitors, runc state, cgroups, the temporary directory. Idempotent.
  async stop(): Promise<string[]> {
    const p = this.proc;
    if (p && p.exitCode === null && p.signalCode === null && p.pid !== undefined) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      // An unref'd timer, so a prompt exit does not keep the bench alive for the full 10 s.
      const t = await Promise.race([
        exited.then(() => 'exited'),
        sleep(10_000, 'timeout', { ref: false }),
      ]);
      if (t === 'timeout' && pidAlive(p.pid)) {
        p.kill('SIGKILL');
        await exited;
      }
    }
    const problems: string[] = [];
    for (const pid of processesMatching('berth-monitor', this.runRoot)) {
      problems.push(`killed monitor ${pid}`);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await runcDeleteAll(join(this.runRoot, 'runc'));
    for (const d of [
      ...sweepCgroups(this.cgroupParent),
      ...sweepCgroups(`${this.cgroupParent}.monitors`),
    ]) {
      problems.push(`cgroup still busy: ${d}`);
    }
    await run('ip', ['link', 'delete', this.bridge]);
    await removePublishedPortsRule(this.bridge);
    for (const m of mountsUnder(this.dir).filter(isImageRoot)) await run('umount', [m]);
    for (const m of mountsUnder(this.dir)) problems.push(`mount left: ${m}`);
    if (mountsUnder(this.dir).length === 0) await rm(this.dir, { recursive: true, force: true });
    return problems;
  }

  get log(): string {
    return this.logs;
  }
}
