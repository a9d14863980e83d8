// Images over the API, in docker's shapes. Pull, push and load answer with a stream of
// docker's progress messages (one JSON object a line); a request that is wrong from the
// start (a bad name, an unknown image) gets a plain error before any stream.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { Type, type Static } from '@sinclair/typebox';
import {
  checkPullReference,
  type ImageArchives,
  type ImageService,
  type ImageTransfer,
  type ProgressMessage,
  type RegistryLogin,
} from '../engine/index.ts';
import type { ImageRecord } from '../types/domain.ts';
import { invalid } from '../util/errors.ts';
import { lineStream, type LineStream } from './line-stream.ts';
// One view of an image for both APIs: Docker's shapes are berth's.
import { imageHistory, imageInspect } from './docker/image-views.ts';
import { truthy } from './query.ts';

export interface ImageDeps {
  readonly images: ImageService;
  readonly transfer: ImageTransfer;
  readonly archives: ImageArchives;
  readonly login: RegistryLogin;
}

const NAME = Type.String({ minLength: 1, maxLength: 1024 });
const PullBody = Type.Object(
  { image: NAME, platform: Type.Optional(Type.String({ maxLength: 256 })) },
  { additionalProperties: false },
);
const PushBody = Type.Object({ image: NAME }, { additionalProperties: false });
const AuthBody = Type.Object(
  {
    serveraddress: Type.Optional(Type.String({ maxLength: 1024 })),
    username: Type.String({ maxLength: 1024 }),
    password: Type.String({ maxLength: 65536 }),
  },
  { additionalProperties: false },
);
const LogoutBody = Type.Object(
  { serveraddress: Type.Optional(Type.String({ maxLength: 1024 })) },
  { additionalProperties: false },
);
const NameParams = Type.Object({ name: NAME });
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
const strict = { additionalProperties: false } as const;
const NoQuery = Type.Object({}, strict);
type NameReq = FastifyRequest<{ Params: Static<typeof NameParams> }>;

const hexId = (id: string): string => `sha256:${id}`;

export function imageSummary(images: ImageService, i: ImageRecord): Record<string, unknown> {
  const digests = images.digestsOf(i.id);
  const repoDigest = digests.find((d) => d.startsWith(`${i.repo}@`));
  return {
    Id: hexId(i.id),
    ParentId: '',
    RepoTags: i.repo === '<none>' ? [] : [`${i.repo}:${i.tag}`],
    RepoDigests: digests,
    Repository: i.repo,
    Tag: i.tag,
    Digest: repoDigest ? repoDigest.slice(repoDigest.indexOf('@') + 1) : '<none>',
    Created: Math.floor(Date.parse(i.createdAt) / 1000),
    Size: i.size,
    SharedSize: -1,
    Containers: -1,
    Labels: { ...i.config.labels },
  };
}

// berth's progress stream: NDJSON, and an error line carries berth's stable code.
function progressStream(
  reply: FastifyReply,
  o: { lazy?: boolean } = {},
): LineStream<ProgressMessage> {
  return lineStream<ProgressMessage>(reply, {
    contentType: 'application/x-ndjson',
    eol: '\n',
    errorMessage: (b) => ({ error: b.message, errorDetail: { code: b.code, message: b.message } }),
    ...o,
  });
}

// docker save, for both APIs: every name resolved before the headers (an error then is a
// plain response), then the archive streamed.
export async function streamSave(
  archives: ImageArchives,
  names: readonly string[],
  reply: FastifyReply,
): Promise<void> {
  const list = archives.prepareSave(names);
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'Content-Type': 'application/x-tar' });
  const ac = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) ac.abort(new Error('the client went away'));
  });
  try {
    await archives.save(list, res, ac.signal);
  } catch {
    // The headers are gone: a cut stream is how a tar says it failed.
    res.destroy();
  }
}

export function registerImageRoutes(app: FastifyInstance, deps: ImageDeps): void {
  const { images, transfer, archives, login } = deps;

  app.get(
    '/v1/images',
    {
      schema: {
        querystring: Type.Object(
          { all: BoolQ, digests: BoolQ, filters: Type.Optional(Type.String({ maxLength: 65536 })) },
          strict,
        ),
      },
    },
    async (req) => {
      const q = req.query as { all?: string };
      void truthy(q.all);
      return images.list().map((i) => imageSummary(images, i));
    },
  );

  app.get(
    '/v1/images/:name/json',
    { schema: { params: NameParams, querystring: NoQuery } },
    async (req: NameReq) => imageInspect(images, images.resolve(req.params.name)),
  );

  app.get(
    '/v1/images/:name/history',
    { schema: { params: NameParams, querystring: NoQuery } },
    async (req: NameReq) => imageHistory(images, images.resolve(req.params.name)),
  );

  app.post(
    '/v1/images/:name/tag',
    {
      schema: {
        params: NameParams,
        querystring: Type.Object(
          { repo: NAME, tag: Type.Optional(Type.String({ maxLength: 128 })) },
          strict,
        ),
      },
    },
    async (req: NameReq, reply) => {
      const q = req.query as { repo: string; tag?: string };
      images.tag(req.params.name, q.tag ? `${q.repo}:${q.tag}` : q.repo);
      return reply.code(201).send();
    },
  );

  app.delete(
    '/v1/images/:name',
    {
      schema: {
        params: NameParams,
        querystring: Type.Object({ force: BoolQ, noprune: BoolQ }, strict),
      },
    },
    async (req: NameReq) => {
      const q = req.query as { force?: string };
      return images.remove(req.params.name, truthy(q.force));
    },
  );

  app.post(
    '/v1/images/prune',
    {
      schema: {
        querystring: Type.Object(
          { all: BoolQ, filters: Type.Optional(Type.String({ maxLength: 65536 })) },
          strict,
        ),
      },
    },
    async (req) => {
      const q = req.query as { all?: string };
      const r = await images.prune(truthy(q.all));
      return { ImagesDeleted: r.deleted, SpaceReclaimed: r.reclaimed };
    },
  );

  app.post(
    '/v1/images/pull',
    { schema: { body: PullBody, querystring: NoQuery } },
    async (req, reply) => {
      const body = req.body as Static<typeof PullBody>;
      checkPullReference(body.image, body.platform);
      const s = progressStream(reply);
      try {
        await transfer.pull(body.image, s.write, {
          signal: s.signal,
          ...(body.platform ? { platform: body.platform } : {}),
        });
        s.end();
      } catch (e) {
        s.fail(e);
      }
    },
  );

  app.post(
    '/v1/images/push',
    { schema: { body: PushBody, querystring: NoQuery } },
    async (req, reply) => {
      const body = req.body as Static<typeof PushBody>;
      images.resolve(body.image);
      checkPullReference(body.image, undefined);
      const s = progressStream(reply);
      try {
        await transfer.push(body.image, s.write, s.signal);
        s.end();
      } catch (e) {
        s.fail(e);
      }
    },
  );

  app.post(
    '/v1/images/load',
    {
      config: { streamBody: true },
      schema: { querystring: Type.Object({ quiet: BoolQ }, strict) },
    },
    async (req, reply) => {
      if (!req.body || typeof (req.body as Readable).pipe !== 'function') {
        throw invalid('body', 'expected a tar stream with Content-Type application/x-tar');
      }
      const s = progressStream(reply, { lazy: true });
      try {
        await archives.load(req.body as Readable, s.write, s.signal);
        s.end();
      } catch (e) {
        s.fail(e);
      }
    },
  );

  app.get(
    '/v1/images/save',
    {
      schema: {
        querystring: Type.Object(
          { names: Type.Union([NAME, Type.Array(NAME, { maxItems: 1000 })]) },
          strict,
        ),
      },
    },
    async (req, reply) => {
      const q = req.query as { names: string | string[] };
      await streamSave(archives, Array.isArray(q.names) ? q.names : [q.names], reply);
    },
  );

  app.post('/v1/auth', { schema: { body: AuthBody, querystring: NoQuery } }, async (req) => {
    const b = req.body as Static<typeof AuthBody>;
    await login.login(b.serveraddress ?? '', b.username, b.password);
    return { Status: 'Login Succeeded', IdentityToken: '' };
  });

  app.post(
    '/v1/auth/logout',
    { schema: { body: LogoutBody, querystring: NoQuery } },
    async (req) => {
      const b = req.body as Static<typeof LogoutBody>;
      const { registry, removed } = await login.logout(b.serveraddress ?? '');
      return {
        Status: removed
          ? `Removing login credentials for ${registry}`
          : `Not logged in to ${registry}`,
      };
    },
  );
}
