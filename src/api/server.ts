// The native HTTP API on berthd's unix socket. Requests are validated here, at the edge,
// before the engine is asked for anything; errors leave as {code, message}.
import type { ContainerRecord } from '../types/domain.ts';
import type { IncomingMessage } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { Registry } from 'prom-client';
import {
  matchFilters,
  validateFilters,
  parseFiltersJson,
  type ContainerEngine,
  type EventBus,
  type ExecService,
  type Filters,
  type ImageService,
  type ImageTransfer,
  type ImageArchives,
  type RegistryLogin,
  type LogService,
  type StatsService,
  type VolumeService,
  type NetworkService,
} from '../engine/index.ts';
import type { WaitCondition } from '../types/api.ts';
import { BerthError, invalid } from '../util/errors.ts';
import { execFile } from '../util/exec.ts';
import { containerInspect, containerSummary } from './views.ts';
import { errorReply, toBerthError } from './errors.ts';
import { UpgradeRouter } from './upgrade.ts';
import {
  BODY_LIMIT,
  DEFAULT_LIMITS,
  MAX_HEADERS_COUNT,
  MAX_PARAM_LENGTH,
  clientErrorHandler,
  httpServerOptions,
  installGuards,
  socketError,
  type ApiLimits,
} from './limits.ts';
import { truthy } from './query.ts';
import { registerLogRoutes } from './logs.ts';
import { registerEventRoutes } from './events.ts';
import { registerVolumeRoutes } from './volumes.ts';
import { imageSummary, registerImageRoutes } from './images.ts';
import { registerNetworkRoutes } from './networks.ts';
import { metricsRegistry, registerMetricsRoutes } from './metrics.ts';

export interface ApiDeps {
  readonly containers: ContainerEngine;
  readonly images: ImageService;
  readonly transfer: ImageTransfer;
  readonly archives: ImageArchives;
  readonly login: RegistryLogin;
  readonly exec: ExecService;
  readonly events: EventBus;
  readonly logs: LogService;
  readonly stats: StatsService;
  readonly volumes: VolumeService;
  readonly networks: NetworkService;
  readonly version: string;
  readonly limits?: ApiLimits;
}

const StrList = Type.Array(Type.String({ maxLength: 65536 }), { maxItems: 4096 });

const ConsoleSize = Type.Tuple([
  Type.Integer({ minimum: 1, maximum: 65535 }),
  Type.Integer({ minimum: 1, maximum: 65535 }),
]);

const ResourcesBody = Type.Object(
  {
    memory: Type.Optional(Type.Integer({ minimum: 0 })),
    memoryReservation: Type.Optional(Type.Integer({ minimum: 0 })),
    memorySwap: Type.Optional(Type.Integer({ minimum: -1 })),
    cpus: Type.Optional(Type.Number({ minimum: 0 })),
    cpuShares: Type.Optional(Type.Integer({ minimum: 0 })),
    cpusetCpus: Type.Optional(Type.String({ maxLength: 256 })),
    pidsLimit: Type.Optional(Type.Integer()),
    blkioWeight: Type.Optional(Type.Integer({ minimum: 0 })),
    ulimits: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({ maxLength: 32 }),
            soft: Type.Integer({ minimum: 0 }),
            hard: Type.Integer({ minimum: 0 }),
          },
          { additionalProperties: false },
        ),
        { maxItems: 32 },
      ),
    ),
  },
  { additionalProperties: false },
);

const CreateBody = Type.Object(
  {
    image: Type.String({ minLength: 1, maxLength: 512 }),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    cmd: Type.Optional(StrList),
    entrypoint: Type.Optional(StrList),
    env: Type.Optional(StrList),
    workdir: Type.Optional(Type.String({ maxLength: 4096 })),
    user: Type.Optional(Type.String({ maxLength: 256 })),
    hostname: Type.Optional(Type.String({ maxLength: 64 })),
    labels: Type.Optional(
      Type.Record(Type.String({ maxLength: 1024 }), Type.String({ maxLength: 65536 })),
    ),
    tty: Type.Optional(Type.Boolean()),
    openStdin: Type.Optional(Type.Boolean()),
    autoRemove: Type.Optional(Type.Boolean()),
    networkMode: Type.Optional(Type.String({ maxLength: 128 })),
    stopSignal: Type.Optional(Type.String({ maxLength: 16 })),
    stopTimeout: Type.Optional(Type.Integer({ minimum: 0, maximum: 86400 })),
    logOpts: Type.Optional(
      Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 256 }), {
        maxProperties: 16,
      }),
    ),
    consoleSize: Type.Optional(ConsoleSize),
    resources: Type.Optional(ResourcesBody),
    restartPolicy: Type.Optional(
      Type.Object(
        {
          name: Type.String({ maxLength: 32 }),
          maximumRetryCount: Type.Optional(Type.Integer({ minimum: 0 })),
          delayMs: Type.Optional(Type.Integer({ minimum: 0 })),
          maxDelayMs: Type.Optional(Type.Integer({ minimum: 0 })),
          factor: Type.Optional(Type.Number()),
          resetAfterMs: Type.Optional(Type.Integer({ minimum: 0 })),
          jitter: Type.Optional(Type.Number()),
        },
        { additionalProperties: false },
      ),
    ),
    mounts: Type.Optional(
      Type.Array(
        Type.Object(
          {
            type: Type.String({ maxLength: 16 }),
            source: Type.Optional(Type.String({ maxLength: 4096 })),
            target: Type.String({ maxLength: 4096 }),
            readOnly: Type.Optional(Type.Boolean()),
            options: Type.Optional(Type.Array(Type.String({ maxLength: 16 }), { maxItems: 8 })),
            sizeBytes: Type.Optional(Type.Integer({ minimum: 0 })),
            mode: Type.Optional(Type.String({ maxLength: 8 })),
            createHostPath: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false },
        ),
        { maxItems: 128 },
      ),
    ),
    ports: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.Optional(Type.String({ maxLength: 63 })),
            containerPort: Type.Optional(Type.Integer()),
            protocol: Type.Union([Type.Literal('tcp'), Type.Literal('udp')]),
            hostIP: Type.String({ maxLength: 64 }),
            hostPort: Type.Optional(Type.Integer()),
            hostPortEnd: Type.Optional(Type.Integer()),
          },
          { additionalProperties: false },
        ),
        { maxItems: 1024 },
      ),
    ),
    publishAll: Type.Optional(Type.Boolean()),
    extraHosts: Type.Optional(StrList),
    dns: Type.Optional(StrList),
    dnsSearch: Type.Optional(StrList),
    shmSizeBytes: Type.Optional(Type.Integer({ minimum: 0 })),
    readWrite: Type.Optional(Type.Boolean()),
    writableSizeBytes: Type.Optional(Type.Integer({ minimum: 0 })),
    ephemeral: Type.Optional(Type.Boolean()),
    userns: Type.Optional(Type.String({ maxLength: 16 })),
    privileged: Type.Optional(Type.Boolean()),
    capAdd: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 64 })),
    capDrop: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 64 })),
    // A seccomp profile travels here as JSON (seccomp={...}).
    securityOpt: Type.Optional(
      Type.Array(Type.String({ maxLength: 512 * 1024 }), { maxItems: 16 }),
    ),
    devices: Type.Optional(
      Type.Array(
        Type.Object(
          {
            pathOnHost: Type.String({ minLength: 1, maxLength: 4096 }),
            pathInContainer: Type.Optional(Type.String({ maxLength: 4096 })),
            cgroupPermissions: Type.Optional(Type.String({ maxLength: 3 })),
          },
          { additionalProperties: false },
        ),
        { maxItems: 128 },
      ),
    ),
    sysctls: Type.Optional(
      Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 4096 }), {
        maxProperties: 64,
      }),
    ),
    healthcheck: Type.Optional(
      Type.Object(
        {
          test: Type.Optional(Type.Array(Type.String({ maxLength: 65536 }), { maxItems: 1024 })),
          intervalMs: Type.Optional(Type.Integer({ minimum: 0 })),
          timeoutMs: Type.Optional(Type.Integer({ minimum: 0 })),
          retries: Type.Optional(Type.Integer({ minimum: 0 })),
          startPeriodMs: Type.Optional(Type.Integer({ minimum: 0 })),
          onFailure: Type.Optional(Type.String({ maxLength: 16 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

const ExecBody = Type.Object(
  {
    cmd: Type.Array(Type.String({ maxLength: 65536 }), { minItems: 1, maxItems: 4096 }),
    env: Type.Optional(StrList),
    workdir: Type.Optional(Type.String({ maxLength: 4096 })),
    user: Type.Optional(Type.String({ maxLength: 256 })),
    tty: Type.Optional(Type.Boolean()),
    stdin: Type.Optional(Type.Boolean()),
    consoleSize: Type.Optional(ConsoleSize),
  },
  { additionalProperties: false },
);

const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });
const BoolQ = Type.Optional(
  Type.Union([
    Type.Literal('0'),
    Type.Literal('1'),
    Type.Literal('true'),
    Type.Literal('false'),
    Type.Literal('True'),
    Type.Literal('False'),
  ]),
);

type IdReq = FastifyRequest<{ Params: Static<typeof IdParams> }>;

export function buildApi(deps: ApiDeps): {
  app: FastifyInstance;
  upgrades: UpgradeRouter;
  registry: Registry;
} {
  const { containers, images, exec, events } = deps;
  const limits = deps.limits ?? DEFAULT_LIMITS;
  const upgrades = new UpgradeRouter(limits);
  const app = Fastify({
    logger: false,
    bodyLimit: BODY_LIMIT,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    http: {
      ...httpServerOptions(limits),
      // installGuards checks Host instead, answering in JSON.
      requireHostHeader: false,
      // Only the hijacked routes switch protocols; an Upgrade header elsewhere is ignored.
      shouldUpgradeCallback: (req) => upgrades.matches(req),
    },
    clientErrorHandler,
    // A path that does not decode, or with a segment over MAX_PARAM_LENGTH.
    frameworkErrors: (err, req, reply) => {
      if (!req.raw.complete) reply.header('Connection', 'close');
      return errorReply(
        reply,
        err.code === 'FST_ERR_BAD_URL'
          ? invalid(
              'path',
              `${(req.url.split('?')[0] ?? '').slice(0, 256)} is not URL-encoded text, or has a part over ${MAX_PARAM_LENGTH} bytes`,
            )
          : toBerthError(err),
      );
    },
    ajv: { customOptions: { allErrors: false, coerceTypes: true, removeAdditional: false } },
  });
  app.server.maxHeadersCount = MAX_HEADERS_COUNT;
  // CONNECT is no method of this API; unanswered, Node would just drop the connection.
  app.server.on('connect', (req: IncomingMessage, sock: Duplex) =>
    socketError(sock, new BerthError('ENDPOINT_NOT_FOUND', `No such endpoint: ${req.method}`)),
  );

  app.setErrorHandler((err, req, reply) => {
    // The rest of an unread body (too large, too slow, refused) is not waited for.
    if (!req.raw.complete) reply.header('Connection', 'close');
    return errorReply(reply, toBerthError(err));
  });
  app.setNotFoundHandler((req, reply) =>
    errorReply(
      reply,
      new BerthError(
        'ENDPOINT_NOT_FOUND',
        `No such endpoint: ${req.method} ${(req.url.split('?')[0] ?? '').slice(0, 256)}`,
      ),
    ),
  );
  installGuards(app, limits);

  const ping = async (_req: FastifyRequest, reply: FastifyReply) =>
    reply.header('Api-Version', '1').type('text/plain').send('OK');
  app.get('/_ping', ping);
  app.get('/v1/_ping', ping);

  app.get('/v1/version', async () => ({
    Version: deps.version,
    ApiVersion: '1',
    Os: 'linux',
    Arch: process.arch === 'x64' ? 'amd64' : process.arch,
    KernelVersion: (await execFile(['uname', '-r'])).stdout.trim(),
    GoVersion: '',
    NodeVersion: process.version,
  }));

  // ---- containers ----

  app.post('/v1/containers', { schema: { body: CreateBody } }, async (req, reply) => {
    const c = await containers.create(req.body as Static<typeof CreateBody>);
    return reply.code(201).send({ Id: c.id, Warnings: [] });
  });

  app.get(
    '/v1/containers',
    {
      schema: {
        querystring: Type.Object({
          all: BoolQ,
          size: BoolQ,
          filters: Type.Optional(Type.String({ maxLength: 65536 })),
        }),
      },
    },
    async (req) => {
      const q = req.query as { all?: string; size?: string; filters?: string };
      const filters = parseFiltersParam(q.filters);
      const all =
        truthy(q.all) ||
        (filters['status']?.length ?? 0) > 0 ||
        (filters['exited']?.length ?? 0) > 0;
      const list = containers
        .list()
        .filter(
          (c) =>
            (all || c.state === 'running' || c.state === 'stopping') && matchFilters(c, filters),
        );
      if (!truthy(q.size)) return list.map((c) => containerSummary(c, containers.netView(c.id)));
      return Promise.all(
        list.map(async (c) => containerSummary(c, containers.netView(c.id), await sizes(c))),
      );
    },
  );

  // Docker's SizeRw is what the container wrote; berth's writable areas are its writable
  // root and its tmpfs mounts. SizeRootFs adds the image.
  const sizes = async (c: ContainerRecord) => {
    const u = await containers.diskUsage(c);
    const rw = u.writableBytes + u.tmpfsBytes;
    let image = 0;
    try {
      image = images.resolve(c.config.imageId).size;
    } catch {
      /* the image is gone: only what the container wrote */
    }
    return {
      SizeRw: rw,
      SizeRootFs: rw + image,
      SizeWritableRoot: u.writableBytes,
      SizeTmpfs: u.tmpfsBytes,
    };
  };

  app.get(
    '/v1/containers/:id',
    { schema: { params: IdParams, querystring: Type.Object({ size: BoolQ }) } },
    async (req: IdReq) => {
      const c = containers.resolve(req.params.id);
      const base = containerInspect(c, containers.logPath(c.id), containers.netView(c.id));
      const view = truthy((req.query as { size?: string }).size)
        ? { ...base, ...(await sizes(c)) }
        : base;
      // Live counters from the monitor: what it wrote, dropped and rotated in this run.
      const stats = c.state === 'running' ? await containers.monitorStats(c.id) : undefined;
      return stats ? { ...view, LogStats: stats } : view;
    },
  );

  app.post(
    '/v1/containers/:id/start',
    { schema: { params: IdParams } },
    async (req: IdReq, reply) => {
      const before = containers.resolve(req.params.id);
      if (before.state === 'running') return reply.code(304).send();
      await containers.start(req.params.id);
      return reply.code(204).send();
    },
  );

  const TQuery = Type.Object({ t: Type.Optional(Type.Integer({ minimum: -1, maximum: 86400 })) });
  app.post(
    '/v1/containers/:id/stop',
    { schema: { params: IdParams, querystring: TQuery } },
    async (req: IdReq, reply) => {
      const t = (req.query as { t?: number }).t;
      const stopped = await containers.stop(
        req.params.id,
        t === undefined || t < 0 ? undefined : t,
      );
      return reply.code(stopped ? 204 : 304).send();
    },
  );

  app.post(
    '/v1/containers/:id/restart',
    { schema: { params: IdParams, querystring: TQuery } },
    async (req: IdReq, reply) => {
      const t = (req.query as { t?: number }).t;
      await containers.restart(req.params.id, t === undefined || t < 0 ? undefined : t);
      return reply.code(204).send();
    },
  );

  app.post(
    '/v1/containers/:id/kill',
    {
      schema: {
        params: IdParams,
        querystring: Type.Object({ signal: Type.Optional(Type.String({ maxLength: 16 })) }),
      },
    },
    async (req: IdReq, reply) => {
      await containers.kill(req.params.id, (req.query as { signal?: string }).signal || 'SIGKILL');
      return reply.code(204).send();
    },
  );

  app.post(
    '/v1/containers/:id/rename',
    {
      schema: {
        params: IdParams,
        querystring: Type.Object({ name: Type.String({ minLength: 1, maxLength: 128 }) }),
      },
    },
    async (req: IdReq, reply) => {
      await containers.rename(req.params.id, (req.query as { name: string }).name);
      return reply.code(204).send();
    },
  );

  app.delete(
    '/v1/containers/:id',
    { schema: { params: IdParams, querystring: Type.Object({ force: BoolQ, v: BoolQ }) } },
    async (req: IdReq, reply) => {
      await containers.remove(req.params.id, truthy((req.query as { force?: string }).force));
      return reply.code(204).send();
    },
  );

  app.post(
    '/v1/containers/:id/wait',
    {
      schema: {
        params: IdParams,
        querystring: Type.Object({
          condition: Type.Optional(
            Type.Union([
              Type.Literal('not-running'),
              Type.Literal('next-exit'),
              Type.Literal('removed'),
            ]),
          ),
        }),
      },
    },
    async (req: IdReq, reply) => {
      const condition = ((req.query as { condition?: string }).condition ??
        'not-running') as WaitCondition;
      const ac = new AbortController();
      // Registered before the headers go out: a client that waits for the headers and
      // then starts the container cannot miss the exit.
      // An unknown container is a 404 now, not a -1 after a 200.
      const c = containers.resolve(req.params.id);
      const done = containers.wait(c.id, condition, ac.signal);
      done.catch(() => undefined);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.flushHeaders();
      res.on('close', () => ac.abort());
      try {
        const r = await done;
        res.end(
          JSON.stringify({ StatusCode: r.exitCode, Error: r.error ? { Message: r.error } : null }) +
            '\n',
        );
      } catch (e) {
        if (!ac.signal.aborted)
          res.end(
            JSON.stringify({ StatusCode: -1, Error: { Message: (e as Error).message } }) + '\n',
          );
      }
    },
  );

  const SizeQ = Type.Object({
    h: Type.Integer({ minimum: 1, maximum: 65535 }),
    w: Type.Integer({ minimum: 1, maximum: 65535 }),
  });
  app.post(
    '/v1/containers/:id/resize',
    { schema: { params: IdParams, querystring: SizeQ } },
    async (req: IdReq, reply) => {
      const q = req.query as { h: number; w: number };
      await containers.resize(req.params.id, q.h, q.w);
      return reply.code(200).send();
    },
  );

  app.post(
    '/v1/containers/:id/update',
    { schema: { params: IdParams, body: ResourcesBody } },
    async (req: IdReq) => {
      await containers.update(req.params.id, req.body as Static<typeof ResourcesBody>);
      return { Warnings: [] };
    },
  );

  app.get('/v1/containers/:id/top', { schema: { params: IdParams } }, async (req: IdReq) => {
    const pids = await containers.pids(req.params.id);
    if (pids.length === 0) return { Titles: [], Processes: [] };
    const r = await execFile([
      'ps',
      '-o',
      'uid,pid,ppid,c,stime,tty,time,cmd',
      '-p',
      pids.join(','),
    ]);
    const lines = r.stdout.trimEnd().split('\n');
    const titles = ['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD'];
    return {
      Titles: titles,
      Processes: lines.slice(1).map((l) => {
        const parts = l.trim().split(/\s+/);
        return [...parts.slice(0, 7), parts.slice(7).join(' ')];
      }),
    };
  });

  app.post(
    '/v1/containers/:id/exec',
    { schema: { params: IdParams, body: ExecBody } },
    async (req: IdReq, reply) => {
      const s = exec.create(req.params.id, req.body as Static<typeof ExecBody>);
      return reply.code(201).send({ Id: s.id });
    },
  );

  app.get('/v1/exec/:id', { schema: { params: IdParams } }, async (req: IdReq) => {
    const s = exec.get(req.params.id);
    return {
      ID: s.id,
      ContainerID: s.containerId,
      Running: s.running,
      ExitCode: s.exitCode,
      Pid: s.pid,
    };
  });

  app.post(
    '/v1/exec/:id/resize',
    { schema: { params: IdParams, querystring: SizeQ } },
    async (req: IdReq, reply) => {
      const q = req.query as { h: number; w: number };
      exec.resize(req.params.id, q.h, q.w);
      return reply.code(200).send();
    },
  );

  // ---- images ----

  registerImageRoutes(app, deps);

  app.post(
    '/v1/images/import',
    {
      config: { streamBody: true },
      schema: {
        querystring: Type.Object(
          { repo: Type.String({ minLength: 1, maxLength: 512 }) },
          { additionalProperties: false },
        ),
      },
    },
    async (req, reply) => {
      if (!req.body || typeof (req.body as Readable).pipe !== 'function') {
        throw invalid('body', 'expected a tar stream with Content-Type application/x-tar');
      }
      const img = await images.importRootfs(
        req.body as Readable,
        (req.query as { repo: string }).repo,
      );
      return reply.code(201).send(imageSummary(images, img));
    },
  );

  registerLogRoutes(app, containers, deps.logs);
  const registry = metricsRegistry(deps.stats);
  registerMetricsRoutes(app, containers, deps.stats, registry);

  // ---- events ----

  registerEventRoutes(app, events);
  registerVolumeRoutes(app, deps.volumes);
  registerNetworkRoutes(app, deps.networks, containers);

  // ---- hijacked streams ----

  upgrades.add(
    'POST',
    /^\/v1\/containers\/([^/]+)\/attach$/,
    async (m, q) => {
      const c = containers.resolve(decodeURIComponent(m[1] ?? ''));
      return (sock) => containers.attach(c.id, sock, truthy(q.get('stdin') ?? undefined));
    },
    ['stream', 'stdin', 'stdout', 'stderr', 'logs', 'detachKeys'],
  );
  upgrades.add('POST', /^\/v1\/exec\/([^/]+)\/start$/, async (m) => {
    const s = exec.get(decodeURIComponent(m[1] ?? ''));
    return async (sock) => {
      await exec.start(s.id, sock);
      sock.end();
    };
  });
  return { app, upgrades, registry };
}

function parseFiltersParam(s: string | undefined): Filters {
  const f = parseFiltersJson(s);
  validateFilters(f);
  return f;
}

export type { IncomingMessage, Duplex };
