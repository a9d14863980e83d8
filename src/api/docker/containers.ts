// Docker's containers and exec endpoints over berth's engine. Streams (wait, logs -f, stats)
// send their headers at once; attach and exec start are hijacked (hijack.ts); every refusal
// is Docker's {"message"} with Docker's status, and a refused create leaves nothing behind.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiDeps } from '../server.ts';
import type { ContainerRecord } from '../../types/domain.ts';
import type { Stream } from '../../engine/index.ts';
import { BerthError, errorMessage, invalid, isBerthError } from '../../util/errors.ts';
import { execFile } from '../../util/exec.ts';
import { parseTimeArg } from '../../util/time.ts';
import { parseFiltersJson } from '../../engine/filters.ts';
import {
  ANONYMOUS_LABEL,
  dockerRestartPolicy,
  dockerUpdateResources,
  fromDockerCreate,
} from './create.ts';
import { notSupported } from './errors.ts';
import { MULTIPLEXED_STREAM, RAW_STREAM, type DockerHijack, type HijackHandler } from './hijack.ts';
import { dockerStats } from './stats.ts';
import { ClientStream, dockerBool, nullStream } from './streams.ts';
import { encodeLogLines, send, sendLog } from '../log-stream.ts';
import { dockerContainerFilter, dockerInspect, dockerSummary } from './views.ts';
import { refuse } from './system.ts';

type Q = Record<string, string | undefined>;
type IdReq = FastifyRequest<{ Params: { id: string }; Querystring: Q }>;

const withTag = (v: string) => (/:[^/]*$/.test(v) || v.includes('@') ? v : `${v}:latest`);

function logTime(v: string | undefined, field: string): string | undefined {
  if (v === undefined || v === '' || v === '0') return undefined;
  const t = parseTimeArg(v);
  if (t === undefined) throw invalid(field, `"${v}" is not a time (Unix seconds or RFC 3339)`);
  return t;
}

function optInt(
  v: string | undefined,
  field: string,
  min: number,
  max: number,
): number | undefined {
  if (v === undefined || v === '') return undefined;
  if (!/^-?\d+$/.test(v)) throw invalid(field, `"${v}" is not a whole number`);
  const n = Number(v);
  if (n < min || n > max) throw invalid(field, `must be from ${min} to ${max}`);
  return n;
}

function dims(q: Q): { h: number; w: number } {
  const h = optInt(q['h'], 'h', 0, 65535) ?? 0;
  const w = optInt(q['w'], 'w', 0, 65535) ?? 0;
  return { h, w };
}

// ps arguments as `docker top` passes them; ps writes nothing but its table.
function psArgs(v: string | undefined): string[] {
  if (v === undefined || v.trim() === '') return ['-ef'];
  const args = v.trim().split(/\s+/);
  if (args.length > 16 || args.some((a) => a.length > 64 || !/^[A-Za-z0-9,=:%+_-]+$/.test(a)))
    throw invalid('ps_args', `"${v.slice(0, 80)}" is not a list of ps options`);
  return args;
}

export function registerDockerContainerRoutes(
  app: FastifyInstance,
  deps: ApiDeps,
  hijack: DockerHijack,
): void {
  const { containers, exec, volumes, stats, logs } = deps;

  // ---- anonymous volumes ----

  const anonymousOf = (c: ContainerRecord): string[] =>
    (c.config.mounts ?? [])
      .filter((m) => m.type === 'volume')
      .map((m) => m.source)
      .filter((n) => {
        try {
          return ANONYMOUS_LABEL in volumes.get(n).labels;
        } catch {
          return false;
        }
      });
  const dropVolumes = async (names: readonly string[]) => {
    for (const n of names) await volumes.remove(n).catch(() => undefined);
  };
  // An auto-removed container takes its anonymous volumes with it, as with docker run --rm.
  const autoRemoved = new Map<string, string[]>();
  for (const c of containers.list()) {
    if (!c.config.autoRemove) continue;
    const anon = anonymousOf(c);
    if (anon.length > 0) autoRemoved.set(c.id, anon);
  }
  deps.events.onAppend((e) => {
    if (e.type !== 'container' || e.action !== 'destroy') return;
    const anon = autoRemoved.get(e.actorId);
    if (!anon) return;
    autoRemoved.delete(e.actorId);
    void dropVolumes(anon);
  });

  // ---- create, list, inspect ----

  app.post('/containers/create', async (req, reply) => {
    const q = req.query as Q;
    const { req: create, anonymousVolumes } = fromDockerCreate(req.body, q['name'], () =>
      randomBytes(32).toString('hex'),
    );
    // 404 with Docker's words, so that `docker run` pulls the image.
    try {
      deps.images.resolve(create.image);
    } catch (e) {
      if (isBerthError(e, 'IMAGE_NOT_FOUND'))
        throw new BerthError('IMAGE_NOT_FOUND', `No such image: ${withTag(create.image)}`);
      throw e;
    }
    const made: string[] = [];
    let c: ContainerRecord;
    try {
      for (const name of anonymousVolumes) {
        await volumes.create({ name, labels: { [ANONYMOUS_LABEL]: '' } });
        made.push(name);
      }
      c = await containers.create(create);
    } catch (e) {
      await dropVolumes(made);
      throw e;
    }
    if (c.config.autoRemove && made.length > 0) autoRemoved.set(c.id, made);
    return reply.code(201).send({ Id: c.id, Warnings: [] });
  });

  app.get('/containers/json', async (req) => {
    const q = req.query as Q;
    const { match, wantsAll } = dockerContainerFilter(deps, q['filters']);
    const limit = optInt(q['limit'], 'limit', -1, 1_000_000);
    const all = dockerBool(q['all']) || wantsAll || (limit !== undefined && limit > 0);
    let list = containers
      .list()
      .filter((c) => (all || c.state === 'running' || c.state === 'stopping') && match(c));
    if (limit !== undefined && limit > 0) list = list.slice(0, limit);
    if (!dockerBool(q['size'])) return list.map((c) => dockerSummary(deps, c));
    return Promise.all(list.map(async (c) => dockerSummary(deps, c, await sizes(c))));
  });

  const sizes = async (c: ContainerRecord) => {
    const u = await containers.diskUsage(c).catch(() => ({ writableBytes: 0, tmpfsBytes: 0 }));
    const rw = u.writableBytes + u.tmpfsBytes;
    let image = 0;
    try {
      image = deps.images.resolve(c.config.imageId).size;
    } catch {
      /* the image is gone */
    }
    return { SizeRw: rw, SizeRootFs: rw + image };
  };

  app.get('/containers/:id/json', async (req: IdReq) => {
    const c = containers.resolve(req.params.id);
    const view = dockerInspect(deps, c);
    return dockerBool(req.query['size']) ? { ...view, ...(await sizes(c)) } : view;
  });

  // ---- lifecycle ----

  app.post('/containers/:id/start', async (req: IdReq, reply) => {
    const c = containers.resolve(req.params.id);
    if (c.state === 'running' || c.state === 'restarting') return reply.code(304).send();
    await containers.start(c.id);
    return reply.code(204).send();
  });

  const stopTimeout = (q: Q) => {
    const t = optInt(q['t'], 't', -1, 86400);
    return t === undefined || t < 0 ? undefined : t;
  };

  app.post('/containers/:id/stop', async (req: IdReq, reply) => {
    const stopped = await containers.stop(req.params.id, stopTimeout(req.query));
    return reply.code(stopped ? 204 : 304).send();
  });

  app.post('/containers/:id/restart', async (req: IdReq, reply) => {
    await containers.restart(req.params.id, stopTimeout(req.query));
    return reply.code(204).send();
  });

  app.post('/containers/:id/kill', async (req: IdReq, reply) => {
    const c = containers.resolve(req.params.id);
    if (c.state !== 'running' && c.state !== 'restarting')
      throw new BerthError('CONTAINER_NOT_RUNNING', `Container ${c.id} is not running`);
    await containers.kill(c.id, req.query['signal'] || 'SIGKILL');
    return reply.code(204).send();
  });

  app.post('/containers/:id/rename', async (req: IdReq, reply) => {
    const name = req.query['name'];
    if (!name) throw invalid('name', 'a new name is needed');
    await containers.rename(req.params.id, name);
    return reply.code(204).send();
  });

  app.delete('/containers/:id', async (req: IdReq, reply) => {
    if (dockerBool(req.query['link'])) throw notSupported('Removing a legacy link');
    const c = containers.resolve(req.params.id);
    const anon = dockerBool(req.query['v']) ? anonymousOf(c) : [];
    await containers.remove(c.id, dockerBool(req.query['force']));
    await dropVolumes(anon);
    return reply.code(204).send();
  });

  app.post('/containers/:id/update', async (req: IdReq) => {
    const c = containers.resolve(req.params.id);
    const res = dockerUpdateResources(req.body);
    const rp = dockerRestartPolicy(
      (req.body as Record<string, unknown> | undefined)?.['RestartPolicy'],
      'RestartPolicy',
    );
    if (rp && rp.name !== 'no' && c.config.autoRemove)
      throw new BerthError(
        'INVALID_ARGUMENT',
        'Restart policy cannot be updated because AutoRemove is enabled for the container',
      );
    if (Object.keys(res).length > 0) await containers.update(c.id, res);
    if (rp) await containers.setRestartPolicy(c.id, rp);
    return { Warnings: [] };
  });

  app.post('/containers/prune', async (req) => {
    const q = req.query as Q;
    const f = parseFiltersJson(q['filters']);
    for (const k of Object.keys(f))
      if (k !== 'until' && k !== 'label' && k !== 'label!')
        throw new BerthError('INVALID_ARGUMENT', `Invalid filter '${k}'`);
    const untils = (f['until'] ?? []).map((u) => {
      const t = parseTimeArg(u);
      if (t === undefined) throw invalid('filters', `until=${u} is not a time`);
      return Date.parse(t);
    });
    const label = (labels: Readonly<Record<string, string>>, v: string) => {
      const i = v.indexOf('=');
      return i < 0 ? v in labels : labels[v.slice(0, i)] === v.slice(i + 1);
    };
    const deleted: string[] = [];
    let reclaimed = 0;
    for (const c of containers.list()) {
      if (c.state !== 'exited' && c.state !== 'created') continue;
      if (untils.some((u) => Date.parse(c.createdAt) >= u)) continue;
      if (!(f['label'] ?? []).every((v) => label(c.config.labels, v))) continue;
      if ((f['label!'] ?? []).some((v) => label(c.config.labels, v))) continue;
      const u = await containers.diskUsage(c).catch(() => ({ writableBytes: 0, tmpfsBytes: 0 }));
      try {
        await containers.remove(c.id, false);
        deleted.push(c.id);
        reclaimed += u.writableBytes;
      } catch {
        /* started or removed meanwhile */
      }
    }
    return { ContainersDeleted: deleted.length > 0 ? deleted : null, SpaceReclaimed: reclaimed };
  });

  // ---- wait ----

  // The engine tells of an exit as soon as the monitor records it, a moment before the
  // container shows as exited; Docker's clients take a wait's answer to mean it no longer
  // runs (and remove it next). So the answer waits for that (or for a restart by policy).
  const settled = async (id: string) => {
    const at = containers.resolve(id).startedAt;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      let c: ContainerRecord;
      try {
        c = containers.resolve(id);
      } catch {
        return;
      }
      if ((c.state !== 'running' && c.state !== 'stopping') || c.startedAt !== at) return;
      await sleep(10);
    }
  };

  app.post('/containers/:id/wait', async (req: IdReq, reply) => {
    const condition = req.query['condition'] || 'not-running';
    if (condition !== 'not-running' && condition !== 'next-exit' && condition !== 'removed')
      throw invalid('condition', `"${condition}" is not not-running, next-exit or removed`);
    // An unknown container is a 404 now, not a -1 after a 200.
    const c = containers.resolve(req.params.id);
    const ac = new AbortController();
    // Registered before the headers go out: a client that waits for them and then starts
    // the container cannot miss the exit.
    const done = containers.wait(c.id, condition, ac.signal);
    done.catch(() => undefined);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Api-Version': '1.41' });
    res.flushHeaders();
    res.on('close', () => ac.abort());
    try {
      const r = await done;
      if (condition !== 'removed') await settled(c.id);
      // Error is for a wait that failed; why the container ended is in its exit code (a
      // start that failed was that request's error already).
      res.end(JSON.stringify({ StatusCode: r.exitCode, Error: null }) + '\n');
    } catch (e) {
      if (!ac.signal.aborted)
        res.end(JSON.stringify({ StatusCode: -1, Error: { Message: errorMessage(e) } }) + '\n');
    }
  });

  // ---- logs ----

  app.get('/containers/:id/logs', async (req: IdReq, reply) => {
    const q = req.query;
    const c = containers.resolve(req.params.id);
    const streams = new Set<Stream>();
    if (dockerBool(q['stdout'])) streams.add('stdout');
    if (dockerBool(q['stderr'])) streams.add('stderr');
    if (streams.size === 0)
      throw invalid('stdout', 'Bad parameters: you must choose at least one stream');
    const since = logTime(q['since'], 'since');
    const until = logTime(q['until'], 'until');
    const tailArg = q['tail'];
    if (tailArg !== undefined && tailArg !== '' && tailArg !== 'all' && !/^-?\d+$/.test(tailArg))
      throw invalid('tail', `"${tailArg}" is not a number or all`);
    const tail =
      tailArg === undefined || tailArg === '' || tailArg === 'all' || Number(tailArg) < 0
        ? undefined
        : Number(tailArg);
    const follow = dockerBool(q['follow']);
    const timestamps = dockerBool(q['timestamps']);
    const ac = new AbortController();
    // Follow ends when the container stops.
    const active =
      c.state === 'running' ||
      c.state === 'restarting' ||
      c.state === 'stopping' ||
      c.state === 'starting';
    const stopped =
      follow && active
        ? containers.wait(c.id, 'not-running', ac.signal).catch(() => undefined)
        : undefined;
    const framed = !c.config.tty;
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'Content-Type': framed ? MULTIPLEXED_STREAM : RAW_STREAM,
      'Api-Version': '1.41',
    });
    res.flushHeaders();
    res.on('close', () => ac.abort());
    try {
      await sendLog(res, logs, c.id, {
        since,
        until,
        tail,
        streams,
        follow: follow ? (stopped ?? Promise.resolve()) : undefined,
        timestamps,
        framed,
        signal: ac.signal,
      });
    } catch {
      /* the log went away (the container was removed): end the stream */
    } finally {
      ac.abort();
      res.end();
    }
  });

  // ---- attach ----

  const attach: HijackHandler = async (m, q) => {
    const c = containers.resolve(m[1] ?? '');
    const stdin = dockerBool(q.get('stdin')) && c.config.openStdin;
    const stream = dockerBool(q.get('stream'));
    const replay = dockerBool(q.get('logs'));
    // Neither named: both, as dockerd does for old clients.
    const named = q.has('stdout') || q.has('stderr');
    const want = {
      stdout: !named || dockerBool(q.get('stdout')),
      stderr: !named || dockerBool(q.get('stderr')),
    };
    const tty = c.config.tty;
    return {
      contentType: tty ? RAW_STREAM : MULTIPLEXED_STREAM,
      run: async (sock) => {
        if (replay) {
          const streams = new Set<Stream>();
          if (want.stdout) streams.add('stdout');
          if (want.stderr) streams.add('stderr');
          try {
            for await (const batch of logs.read(c.id, { streams }))
              sock.write(encodeLogLines(batch, false, !tty));
          } catch {
            /* no log yet (never started): nothing to replay */
          }
        }
        if (!stream) {
          sock.end();
          return;
        }
        const filter = !tty && (!want.stdout || !want.stderr) ? want : undefined;
        const s =
          stdin && !filter
            ? sock
            : new ClientStream(sock, { passEof: stdin, ...(filter ? { filter } : {}) });
        await containers.attach(c.id, s, stdin);
      },
    };
  };
  hijack.add('POST', /^\/containers\/([^/]+)\/attach$/, attach);
  app.post('/containers/:id/attach', async (req, reply) => hijack.serve(req, reply, attach));

  app.post('/containers/:id/resize', async (req: IdReq, reply) => {
    const { h, w } = dims(req.query);
    if (h > 0 && w > 0) await containers.resize(req.params.id, h, w);
    return reply.code(200).send();
  });

  // ---- exec ----

  app.post('/containers/:id/exec', async (req: IdReq, reply) => {
    const b = (req.body ?? {}) as Record<string, unknown>;
    if (typeof b !== 'object' || Array.isArray(b)) throw invalid('body', 'must be an object');
    if (b['Privileged'] === true)
      throw invalid('Privileged', 'an exec never has more privilege than its container');
    const cmd = typeof b['Cmd'] === 'string' ? [b['Cmd']] : b['Cmd'];
    if (!Array.isArray(cmd) || cmd.length === 0 || cmd.some((x) => typeof x !== 'string'))
      throw invalid('Cmd', 'No exec command specified');
    const strs = (v: unknown, f: string): string[] | undefined => {
      if (v === undefined || v === null) return undefined;
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
        throw invalid(f, 'must be a list of strings');
      return v as string[];
    };
    const optStr = (v: unknown, f: string): string | undefined => {
      if (v === undefined || v === null || v === '') return undefined;
      if (typeof v !== 'string') throw invalid(f, 'must be a string');
      return v;
    };
    const env = strs(b['Env'], 'Env');
    const workdir = optStr(b['WorkingDir'], 'WorkingDir');
    const user = optStr(b['User'], 'User');
    const cs = b['ConsoleSize'];
    const s = exec.create(req.params.id, {
      cmd: cmd as string[],
      ...(env && env.length > 0 ? { env } : {}),
      ...(workdir ? { workdir } : {}),
      ...(user ? { user } : {}),
      tty: b['Tty'] === true,
      stdin: b['AttachStdin'] === true,
      ...(Array.isArray(cs) &&
      cs.length === 2 &&
      typeof cs[0] === 'number' &&
      typeof cs[1] === 'number' &&
      cs[0] > 0 &&
      cs[1] > 0
        ? { consoleSize: [cs[0], cs[1]] as [number, number] }
        : {}),
    });
    return reply.code(201).send({ Id: s.id });
  });

  const execStart: HijackHandler = async (m, _q, body) => {
    const s = exec.get(m[1] ?? '');
    if (s.running || s.exitCode !== null)
      throw new BerthError('CONTAINER_BUSY', `Exec ${s.id} has already been started`);
    // Refused before the switch of protocols, as dockerd does.
    const c = containers.resolve(s.containerId);
    if (c.state !== 'running')
      throw new BerthError('CONTAINER_NOT_RUNNING', `Container ${c.id} is not running`);
    const b = (body ?? {}) as Record<string, unknown>;
    const detach = b['Detach'] === true;
    return {
      contentType: s.req.tty ? RAW_STREAM : MULTIPLEXED_STREAM,
      run: async (sock) => {
        if (detach) {
          void exec.start(s.id, nullStream()).catch(() => undefined);
          sock.end();
          return;
        }
        const stdin = s.req.stdin ?? false;
        await exec.start(s.id, stdin ? sock : new ClientStream(sock, { passEof: false }));
        sock.end();
      },
    };
  };
  hijack.add('POST', /^\/exec\/([^/]+)\/start$/, execStart);
  app.post('/exec/:id/start', async (req, reply) => {
    const b = (req.body ?? {}) as Record<string, unknown>;
    if (b['Detach'] === true) {
      const s = exec.get((req.params as { id: string }).id);
      if (s.running || s.exitCode !== null)
        throw new BerthError('CONTAINER_BUSY', `Exec ${s.id} has already been started`);
      void exec.start(s.id, nullStream()).catch(() => undefined);
      return reply.code(200).send();
    }
    return hijack.serve(req, reply, execStart);
  });

  app.post('/exec/:id/resize', async (req: IdReq, reply) => {
    const { h, w } = dims(req.query);
    if (h > 0 && w > 0) exec.resize(req.params.id, h, w);
    return reply.code(200).send();
  });

  app.get('/exec/:id/json', async (req: IdReq) => {
    const s = exec.get(req.params.id);
    const [entrypoint = '', ...args] = s.req.cmd;
    return {
      CanRemove: false,
      ContainerID: s.containerId,
      DetachKeys: '',
      ExitCode: s.exitCode ?? 0,
      ID: s.id,
      OpenStderr: true,
      OpenStdin: s.req.stdin ?? false,
      OpenStdout: true,
      ProcessConfig: {
        arguments: args,
        entrypoint,
        privileged: false,
        tty: s.req.tty ?? false,
        user: s.req.user ?? '',
      },
      Running: s.running,
      Pid: s.pid,
    };
  });

  // ---- top, stats ----

  app.get('/containers/:id/top', async (req: IdReq) => {
    const args = psArgs(req.query['ps_args']);
    const c = containers.resolve(req.params.id);
    if (c.state !== 'running')
      throw new BerthError('CONTAINER_NOT_RUNNING', `Container ${c.id} is not running`);
    const pids = new Set((await containers.pids(c.id)).map(String));
    const r = await execFile(['ps', ...args], { allowFailure: true });
    if (r.code !== 0)
      throw invalid('ps_args', `ps failed: ${r.stderr.trim().split('\n')[0] ?? ''}`);
    const lines = r.stdout.trimEnd().split('\n');
    const titles = (lines[0] ?? '').trim().split(/\s+/);
    const pidCol = titles.indexOf('PID');
    if (pidCol < 0)
      throw new BerthError('INVALID_ARGUMENT', "Couldn't find PID field in ps output");
    const processes: string[][] = [];
    for (const line of lines.slice(1)) {
      const f = line.trim().split(/\s+/);
      if (!pids.has(f[pidCol] ?? '')) continue;
      processes.push([...f.slice(0, titles.length - 1), f.slice(titles.length - 1).join(' ')]);
    }
    return { Titles: titles, Processes: processes };
  });

  app.get('/containers/:id/stats', async (req: IdReq, reply) => {
    const q = req.query;
    const c0 = containers.resolve(req.params.id);
    const stream = q['stream'] === undefined ? true : dockerBool(q['stream']);
    const path = containers.cgroupsPathOf(c0.id);
    const current = (): ContainerRecord | undefined => {
      try {
        return containers.resolve(c0.id);
      } catch {
        return undefined;
      }
    };
    if (!stream) {
      const s = c0.state === 'running' ? await stats.ensure(c0) : undefined;
      return dockerStats(c0, s, path);
    }
    stats.touch();
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Api-Version': '1.41' });
    res.flushHeaders();
    let closed = false;
    res.on('close', () => (closed = true));
    while (!closed) {
      const c = current();
      if (!c) break;
      const s = c.state === 'running' ? await stats.ensure(c) : undefined;
      await send(res, JSON.stringify(dockerStats(c, s, path)) + '\n');
      // The sampler's next pass, or a second when it has nothing to sample.
      await Promise.race([stats.nextSample(), new Promise((r) => setTimeout(r, 1500).unref())]);
    }
    res.end();
  });

  // ---- what berth does not do ----

  for (const [url, what] of [
    ['/containers/:id/export', 'Exporting a container'],
    ['/containers/:id/archive', 'Copying files in and out of a container (docker cp)'],
    ['/containers/:id/changes', 'Listing changes of a container'],
    ['/containers/:id/pause', 'Pausing a container'],
    ['/containers/:id/unpause', 'Pausing a container'],
    ['/containers/:id/attach/ws', 'Attaching over a websocket'],
    ['/containers/:id/checkpoints', 'Checkpoints'],
    ['/containers/:id/checkpoints/*', 'Checkpoints'],
  ] as const)
    refuse(app, url, what);
}

export type { FastifyReply };
