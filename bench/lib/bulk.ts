// Hundreds of containers made or removed at once, for scenarios whose subject is how an
// engine copes with many (ps, readopt), not how fast it makes them: through an API, a few
// calls at a time on keep-alive connections, so that no CLI starts per container. berthd's
// and dockerd's own sockets; for podman, which has no daemon, a `podman system service`
// on the same storage, started for the batch and stopped (by pid) after it. The containers
// get the bench's usual flags (Engine.runFlags), said in each API's terms. Podman's
// containers to be started are started by its CLI (`run -d`): a container started through
// the service would have the service, not a CLI, as conmon's parent.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { trackPid, untrackPid } from './berthd.ts';
import { repeatConcurrently } from './concurrently.ts';
import { cli, printedId, type Engine } from './engines.ts';
import { pidAlive } from './proc.ts';
import { expectStatus, unixRequest } from './unix-http.ts';

export interface BulkSpec {
  readonly cmd: readonly string[];
  // Started (running) or only created.
  readonly start: boolean;
}

// Calls at a time: enough to keep a daemon busy on a small machine, few enough not to
// time out behind each other.
const WIDTH = 8;
// podman run -d processes at a time.
const CLI_WIDTH = 4;

interface Api {
  readonly socket: string;
  readonly kind: 'berth' | 'docker' | 'libpod';
  // The create body for a command.
  body(cmd: readonly string[]): unknown;
}

// runFlags as pairs (--flag value); undefined if any flag is not one of these.
function flagPairs(flags: readonly string[]): Map<string, string[]> | undefined {
  const known = ['--network', '--cgroup-parent', '--log-driver', '--ulimit'];
  const out = new Map<string, string[]>();
  for (let i = 0; i < flags.length; i += 2) {
    const f = flags[i] ?? '';
    const v = flags[i + 1];
    if (!known.includes(f) || v === undefined) return undefined;
    out.set(f, [...(out.get(f) ?? []), v]);
  }
  return out;
}

// The create body of the engine's API for its runFlags, or undefined when they cannot be
// said there (then the CLI does it).
function apiBody(
  e: Engine,
): { kind: Api['kind']; body: (cmd: readonly string[]) => unknown } | undefined {
  const f = flagPairs(e.runFlags);
  if (!f) return undefined;
  const network = f.get('--network')?.[0] ?? 'none';
  if (e.name === 'berth' || e.name === 'docker') {
    if (f.size !== 1 || network !== 'none') return undefined;
    return e.name === 'berth'
      ? { kind: 'berth', body: (cmd) => ({ image: e.image, cmd: [...cmd], networkMode: 'none' }) }
      : {
          kind: 'docker',
          body: (cmd) => ({ Image: e.image, Cmd: [...cmd], HostConfig: { NetworkMode: 'none' } }),
        };
  }
  if (network !== 'none') return undefined;
  const rlimits = (f.get('--ulimit') ?? []).map((u) => {
    const m = /^(\w+)=(\d+):(\d+)$/.exec(u);
    return m ? { type: m[1], soft: Number(m[2]), hard: Number(m[3]) } : undefined;
  });
  if (rlimits.some((r) => r === undefined)) return undefined;
  const parent = f.get('--cgroup-parent')?.[0];
  const driver = f.get('--log-driver')?.[0];
  return {
    kind: 'libpod',
    body: (cmd) => ({
      image: e.image,
      command: [...cmd],
      netns: { nsmode: 'none' },
      ...(parent ? { cgroup_parent: parent } : {}),
      ...(driver ? { log_configuration: { driver } } : {}),
      r_limits: rlimits,
    }),
  };
}

// Runs fn with the engine's API: its daemon's socket, or a podman service for the time of
// the call.
async function withApi<T>(
  e: Engine,
  signal: AbortSignal | undefined,
  fn: (api: Api | undefined) => Promise<T>,
): Promise<T> {
  const b = apiBody(e);
  if (!b) return fn(undefined);
  if (e.socket !== undefined) return fn({ socket: e.socket, ...b });
  if (e.name !== 'podman') return fn(undefined);
  const dir = await mkdtemp('/tmp/bb-psvc-');
  const socket = join(dir, 'podman.sock');
  const c = e.command(['system', 'service', '--time', '0', `unix://${socket}`]);
  const p = spawn(c.file, c.args, { env: c.env, stdio: 'ignore', detached: true });
  const pid = p.pid;
  if (pid !== undefined) trackPid(pid);
  const exited = new Promise((r) => p.once('exit', r));
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      signal?.throwIfAborted();
      const r = await unixRequest(socket, '/_ping', { agent: false }).catch(() => undefined);
      if (r?.status === 200) break;
      if (p.exitCode !== null || p.signalCode !== null) throw new Error('podman service exited');
      if (Date.now() > deadline) throw new Error('podman service not ready in 20 s');
      await sleep(50);
    }
    return await fn({ socket, ...b });
  } finally {
    if (pid !== undefined && p.exitCode === null && p.signalCode === null) {
      p.kill('SIGTERM');
      const t = await Promise.race([
        exited.then(() => 'exited'),
        sleep(10_000, 'timeout', { ref: false }),
      ]);
      if (t === 'timeout' && pidAlive(pid)) {
        p.kill('SIGKILL');
        await exited;
      }
    }
    if (pid !== undefined) untrackPid(pid);
    await rm(dir, { recursive: true, force: true });
  }
}

const paths = {
  berth: { create: '/v1/containers', item: (id: string) => `/v1/containers/${id}` },
  docker: { create: '/containers/create', item: (id: string) => `/containers/${id}` },
  libpod: {
    create: '/v4.0.0/libpod/containers/create',
    item: (id: string) => `/v4.0.0/libpod/containers/${id}`,
  },
};

// Makes n containers; returns their ids. After a failure the calls under way finish before
// it is thrown, and every id made so far is in `made` (for teardown).
export async function makeContainers(
  e: Engine,
  n: number,
  spec: BulkSpec,
  signal: AbortSignal,
  made: string[] = [],
): Promise<string[]> {
  const ids: string[] = [];
  const viaCli = async () => {
    await repeatConcurrently(n, CLI_WIDTH, async () => {
      const verb = spec.start ? ['run', '-d'] : ['create'];
      const r = await cli(e, [...verb, ...e.runFlags, e.image, ...spec.cmd], {
        signal,
        timeoutMs: 120_000,
      });
      const id = printedId(r.stdout);
      ids.push(id);
      made.push(id);
    });
    return ids;
  };
  if (spec.start && e.socket === undefined) return viaCli();
  return withApi(e, signal, async (api) => {
    if (!api) return viaCli();
    const p = paths[api.kind];
    const agent = new Agent({ keepAlive: true, maxSockets: WIDTH });
    const o = { agent, signal };
    try {
      await repeatConcurrently(n, WIDTH, async () => {
        const r = await unixRequest(api.socket, p.create, {
          ...o,
          method: 'POST',
          body: api.body(spec.cmd),
        });
        const body = JSON.parse(expectStatus(r, 201, 'create').body) as { Id: string };
        ids.push(body.Id);
        made.push(body.Id);
        if (spec.start) {
          const s = await unixRequest(api.socket, `${p.item(body.Id)}/start`, {
            ...o,
            method: 'POST',
          });
          expectStatus(s, 204, `start ${body.Id}`);
        }
      });
    } finally {
      agent.destroy();
    }
    return ids;
  });
}

// Removes these containers (running ones too, killed at once).
export async function removeContainers(
  e: Engine,
  ids: readonly string[],
  signal?: AbortSignal,
): Promise<void> {
  if (ids.length === 0) return;
  await withApi(e, signal, async (api) => {
    if (!api) {
      await cli(e, e.rmArgs(ids), { timeoutMs: 600_000, ...(signal ? { signal } : {}) });
      return;
    }
    const agent = new Agent({ keepAlive: true, maxSockets: WIDTH });
    const queue = [...ids];
    const query = api.kind === 'libpod' ? '?force=true&timeout=0' : '?force=1';
    try {
      await repeatConcurrently(ids.length, WIDTH, async () => {
        const id = queue.shift();
        if (id === undefined) return;
        const r = await unixRequest(api.socket, `${paths[api.kind].item(id)}${query}`, {
          method: 'DELETE',
          agent,
          ...(signal ? { signal } : {}),
        });
        // Gone already is fine; libpod answers 200 with a report per container.
        if (![200, 204, 404].includes(r.status)) expectStatus(r, 204, `rm ${id}`);
        if (r.status === 200) {
          const reports = JSON.parse(r.body) as { Err?: string }[];
          const err = reports.find((x) => x.Err)?.Err;
          if (err) throw new Error(`rm ${id}: ${err}`);
        }
      });
    } finally {
      agent.destroy();
    }
  });
}
