// Starts a real berthd on a temporary data root, run root and socket, and checks after a
// test that nothing it made is left: runc state, cgroups, monitors, bundle directories.
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { removePublishedPortsRule } from '../../src/network/netns.ts';
import { BerthClient } from '../../src/client/index.ts';

export const REPO = resolve(import.meta.dirname, '..', '..', '..');
export const MAIN = join(REPO, 'dist', 'src', 'main.js');

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export class TestDaemon {
  readonly dir: string;
  readonly root: string;
  readonly runRoot: string;
  readonly socket: string;
  readonly client: BerthClient;
  private proc: ChildProcess | undefined;
  private logs = '';
  private extraArgs: readonly string[] = [];

  // Each test daemon has a default network of its own, so daemons running side by side
  // never hand out the same address; /24s of 10.215.0.0/16 (user networks come from
  // 10.214.0.0/16).
  readonly bridge: string;
  readonly bridgeSubnet: string;

  private constructor(dir: string) {
    this.dir = dir;
    const n = 1 + Math.floor(Math.random() * 250);
    this.bridge = `bt${randomBytes(4).toString('hex')}`;
    this.bridgeSubnet = `10.215.${n}.0/24`;
    this.root = join(dir, 'data');
    this.runRoot = join(dir, 'run');
    this.socket = join(this.runRoot, 'berth.sock');
    this.client = new BerthClient(`unix://${this.socket}`);
  }

  static async start(extraArgs: readonly string[] = []): Promise<TestDaemon> {
    const d = new TestDaemon(await mkdtemp('/tmp/bt-'));
    d.extraArgs = extraArgs;
    await d.startProcess();
    return d;
  }

  get pid(): number {
    return this.proc?.pid ?? 0;
  }

  // The Docker-compatible API's socket (berthd's default, RUN_ROOT/docker.sock), and the
  // DOCKER_HOST that points the docker CLI, docker-compose or dockerode at it.
  get dockerSocket(): string {
    return join(this.runRoot, 'docker.sock');
  }

  get dockerHost(): string {
    return `unix://${this.dockerSocket}`;
  }

  get log(): string {
    return this.logs;
  }

  async startProcess(): Promise<void> {
    this.logs = '';
    const p = spawn(
      process.execPath,
      [
        MAIN,
        'daemon',
        '--root',
        this.root,
        '--run-root',
        this.runRoot,
        '--log-level',
        'debug',
        '--bridge-name',
        this.bridge,
        '--bridge-subnet',
        this.bridgeSubnet,
        ...this.extraArgs,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.proc = p;
    p.stdout?.on('data', (b: Buffer) => (this.logs += b.toString()));
    p.stderr?.on('data', (b: Buffer) => (this.logs += b.toString()));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (p.exitCode !== null) throw new Error(`berthd exited ${p.exitCode}: ${this.logs}`);
      if (this.logs.includes('berthd ready')) return;
      await sleep(20);
    }
    throw new Error(`berthd did not become ready: ${this.logs}`);
  }

  // kill -9: what a crash looks like to the containers.
  async kill9(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  async stopProcess(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
  }

  // The whole event journal from the API (or one actor's part of it).
  journal(actorId?: string): Promise<JournalEvent[]> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socket, path: '/v1/events?since=0' }, (res) => {
        let body = '';
        res.on('data', (b: Buffer) => (body += b.toString()));
        res.on('end', () =>
          resolve(
            body
              .split('\n')
              .filter(Boolean)
              .map((l) => JSON.parse(l) as JournalEvent)
              .filter((e) => actorId === undefined || e.actorId === actorId),
          ),
        );
      });
      req.on('error', reject);
      req.end();
    });
  }

  // Runs the real `berth` CLI against this daemon.
  berth(
    args: readonly string[],
    opts: { input?: string; timeoutMs?: number } = {},
  ): Promise<RunResult> {
    return runCommand(process.execPath, ['--', MAIN, ...args], {
      ...opts,
      env: { ...process.env, BERTH_HOST: `unix://${this.socket}` },
    });
  }

  // `berth inspect ID`, parsed: the one object of its array.
  async inspect<T>(id: string): Promise<T> {
    return (JSON.parse(await this.berthOk(['inspect', id])) as T[])[0] as T;
  }

  // `berth run -d ARGS...`, returning the new container's id.
  async runDetached(args: readonly string[]): Promise<string> {
    return (await this.berthOk(['run', '-d', ...args])).trim();
  }

  async berthOk(args: readonly string[]): Promise<string> {
    const r = await this.berth(args);
    if (r.code !== 0) throw new Error(`berth ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  // Removes every container through the API, stops berthd, then asserts nothing leaked.
  async destroy(): Promise<void> {
    try {
      if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
        const all = await this.client.listContainers(true).catch(() => []);
        await Promise.all(
          all.map((c) => this.client.removeContainer(c.Id, true).catch(() => undefined)),
        );
        // A test that failed half-way may leave volumes mounted: the daemon unmounts them.
        await this.client.pruneVolumes().catch(() => undefined);
      }
    } finally {
      await this.stopProcess();
    }
    const leaks = this.leaks();
    // Whatever the test did, never leave containers behind on the machine.
    if (leaks.length > 0) await this.forceCleanup();
    // Image roots stay mounted after berthd by design (they are shared, and outlive it as
    // containers do): the test root goes, so they go.
    for (const m of this.mountsUnder().filter((p) => IMAGE_ROOT.test(p))) {
      await runCommand('/usr/bin/umount', [m]);
    }
    // The default network's bridge and its forwarding rule outlive berthd (as docker0
    // does): the test made them.
    await runCommand('/usr/sbin/ip', ['link', 'delete', this.bridge]);
    await removePublishedPortsRule(this.bridge);
    await rm(this.dir, { recursive: true, force: true });
    if (leaks.length > 0) throw new Error(`leaked: ${leaks.join('; ')}`);
  }

  // Everything berth creates for the given containers, looked up on the host; with no ids,
  // everything the daemon has made.
  leaks(ids?: readonly string[]): string[] {
    const out: string[] = [];
    const mine = (e: string) => !ids || ids.includes(e);
    const runcRoot = join(this.runRoot, 'runc');
    if (existsSync(runcRoot))
      for (const e of readdirSync(runcRoot)) if (mine(e)) out.push(`runc state ${e}`);
    const cdir = join(this.runRoot, 'c');
    if (existsSync(cdir))
      for (const e of readdirSync(cdir)) if (mine(e)) out.push(`state dir ${e}`);
    for (const pid of monitorPids(this.runRoot)) {
      if (!ids || ids.some((id) => monitorPids(id).includes(pid)))
        out.push(`monitor process ${pid}`);
    }
    for (const id of ids ?? []) out.push(...cgroupLeaks(id));
    for (const id of ids ?? [])
      if (existsSync(`/run/netns/berth-${id.slice(0, 12)}`)) out.push(`netns of ${id}`);
    for (const m of this.mountsUnder()) if (!IMAGE_ROOT.test(m)) out.push(`mount ${m}`);
    return out;
  }

  private async forceCleanup(): Promise<void> {
    for (const pid of monitorPids(this.runRoot)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    const runcRoot = join(this.runRoot, 'runc');
    if (existsSync(runcRoot)) {
      for (const id of readdirSync(runcRoot)) {
        await runCommand('/usr/sbin/runc', ['--root', runcRoot, 'delete', '--force', id]);
      }
    }
    // Volumes, writable roots: deepest first, and never rm -rf through a mount point.
    for (const m of this.mountsUnder()) await runCommand('/usr/bin/umount', [m]);
  }

  // Mount points under the test root, deepest first.
  mountsUnder(): string[] {
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((m) => m.startsWith(`${this.dir}/`))
      .sort((a, b) => b.length - a.length);
  }
}

// An image's shared read-only root (images/image-root.ts).
const IMAGE_ROOT = /\/images\/[0-9a-f]{64}\/rootfs$/;

export function monitorPids(marker: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (cmd.includes('berth-monitor') && cmd.includes(marker)) pids.push(Number(e));
    } catch {
      /* raced with exit */
    }
  }
  return pids;
}

export function cgroupLeaks(id: string): string[] {
  const out: string[] = [];
  const base = '/sys/fs/cgroup';
  for (const h of readdirSync(base)) {
    const p = join(base, h, 'berth', id);
    if (existsSync(p)) out.push(`cgroup ${p}`);
  }
  return out;
}

// A zombie counts as dead: it has exited and only waits for its parent (here often the
// sandbox's init, which reaps slowly) to collect it.
export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export function runCommand(
  file: string,
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    const p = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code: code ?? (signal ? -1 : 0), stdout, stderr });
    });
    p.stdin.on('error', () => undefined); // a command that never reads its stdin
    p.stdin.end(opts.input ?? '');
  });
}

// Polls f until it returns a value (not undefined), and returns it.
export async function waitForValue<T>(
  what: string,
  f: () => Promise<T | undefined>,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export interface JournalEvent {
  seq: number;
  time: string;
  action: string;
  actorId: string;
  attributes: Record<string, string>;
}

export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  ms = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await sleep(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}
