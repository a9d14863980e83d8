// Docker's images endpoints over berth's image engine: pull and import (POST
// /images/create), push, list, inspect, history, tag, rmi, load, save, prune, and
// `docker login` (POST /auth, which checks and keeps nothing: Docker clients send their
// credentials with each pull and push, in X-Registry-Auth). An image name may hold
// slashes (127.0.0.1:5000/team/app), so the per-image routes take the rest of the path and
// read the action off its end, as Docker's router does.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { checkPullReference } from '../../engine/index.ts';
import { BerthError, invalid, isBerthError } from '../../util/errors.ts';
import type { ApiDeps } from '../server.ts';
import { streamSave } from '../images.ts';
import { dockerError, dropUnreadBody } from './errors.ts';
import { imageHistory, imageInspect, listImages } from './image-views.ts';
import { messageStream, type MessageStream } from './jsonmessage.ts';
import {
  bodyObject,
  boolFilter,
  dockerFilters,
  field,
  qBool,
  qs,
  qsAll,
  type Query,
} from './params.ts';
import { registryAuth } from './registry-auth.ts';

const notSupported = (what: string) => new BerthError('NOT_IMPLEMENTED', what);

// name[:tag|@digest] with its tag or digest replaced: Docker's `tag` parameter may be
// either (a digest has a colon).
export function withTag(name: string, tag: string): string {
  let repo = name;
  const at = repo.indexOf('@');
  if (at >= 0) repo = repo.slice(0, at);
  const colon = repo.lastIndexOf(':');
  if (colon > repo.lastIndexOf('/')) repo = repo.slice(0, colon);
  return tag.includes(':') ? `${repo}@${tag}` : `${repo}:${tag}`;
}

// Whether a name carries a tag or a digest.
function hasTagOrDigest(name: string): boolean {
  return name.includes('@') || name.lastIndexOf(':') > name.lastIndexOf('/');
}

function streamBody(req: FastifyRequest): Readable {
  const b = req.body as Readable | undefined;
  if (!b || typeof b.pipe !== 'function')
    throw invalid('body', 'expected the archive as the request body');
  return b;
}

export function registerDockerImageRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { images, transfer, archives, login } = deps;

  app.get('/images/json', async (req) => listImages(images, req.query as Query));

  app.get('/images/search', async () => {
    throw notSupported(
      'Searching a registry is not supported by berth: pull the image by its full name',
    );
  });

  const save = (names: string[], reply: FastifyReply) => streamSave(archives, names, reply);

  app.get('/images/get', async (req, reply) => save(qsAll(req.query as Query, 'names'), reply));

  app.post('/images/prune', async (req) => {
    const f = dockerFilters(req.query as Query, ['dangling', 'label', 'label!', 'until']);
    for (const k of ['label', 'label!', 'until'])
      if (f[k]?.length)
        throw notSupported(`The image prune filter "${k}" is not supported by berth`);
    // dangling=false: every unused image, as `docker image prune -a`.
    const r = await images.prune(boolFilter(f, 'dangling') === false);
    return { ImagesDeleted: r.deleted.length > 0 ? r.deleted : null, SpaceReclaimed: r.reclaimed };
  });

  app.post('/auth', async (req, reply) => {
    const b = bodyObject(req.body);
    let username = field(b, 'username', 'string') ?? '';
    let password = field(b, 'password', 'string') ?? '';
    const auth = field(b, 'auth', 'string');
    if (username === '' && auth) {
      const decoded = Buffer.from(auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) throw invalid('auth', 'must be base64 of user:password');
      username = decoded.slice(0, colon);
      password = decoded.slice(colon + 1);
    }
    if (field(b, 'identitytoken', 'string') || field(b, 'registrytoken', 'string'))
      throw notSupported('Logging in with an identity or registry token is not supported by berth');
    try {
      await login.check(field(b, 'serveraddress', 'string') ?? '', username, password);
    } catch (e) {
      // Docker answers a refused login with 401.
      if (isBerthError(e, 'REGISTRY_AUTH_FAILED'))
        return reply.code(401).send({ message: e.message });
      throw e;
    }
    return { Status: 'Login Succeeded', IdentityToken: '' };
  });

  // Routes whose body is a byte stream (an archive, a root filesystem): a context of their
  // own takes any body as it comes.
  void app.register(async (sub) => {
    sub.removeAllContentTypeParsers();
    sub.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    sub.setErrorHandler(async (err, req, reply) => {
      await dropUnreadBody(req.raw, reply);
      return dockerError(reply, err);
    });

    sub.post('/images/create', async (req, reply) => {
      const q = req.query as Query;
      const fromImage = qs(q, 'fromImage');
      const fromSrc = qs(q, 'fromSrc');
      if ((fromImage === undefined) === (fromSrc === undefined))
        throw invalid('query', 'give either fromImage (pull) or fromSrc (import)');
      if (fromImage !== undefined) {
        (req.body as Readable | undefined)?.resume?.();
        return pull(req, reply, fromImage, q);
      }
      return importImage(req, reply, fromSrc ?? '', q);
    });

    sub.post('/images/load', async (req, reply) => {
      const quiet = qBool(req.query as Query, 'quiet');
      const body = streamBody(req);
      const s = messageStream(reply, { lazy: true });
      try {
        await archives.load(
          body,
          (m) => {
            if (m.status?.startsWith('Loaded image')) s.write({ stream: `${m.status}\n` });
            else if (!quiet) s.progress(m);
          },
          s.signal,
        );
        s.end();
      } catch (e) {
        s.fail(e);
      }
    });
  });

  const pull = async (req: FastifyRequest, reply: FastifyReply, fromImage: string, q: Query) => {
    const tag = qs(q, 'tag') ?? '';
    const ref = tag
      ? withTag(fromImage, tag)
      : hasTagOrDigest(fromImage)
        ? fromImage
        : `${fromImage}:latest`;
    const platform = qs(q, 'platform') || undefined;
    checkPullReference(ref, platform);
    const credentials = registryAuth(req);
    const s = messageStream(reply);
    try {
      await transfer.pull(ref, s.progress, {
        signal: s.signal,
        ...(platform ? { platform } : {}),
        ...(credentials ? { credentials } : {}),
      });
      s.end();
    } catch (e) {
      s.fail(e);
    }
  };

  const importImage = async (
    req: FastifyRequest,
    reply: FastifyReply,
    fromSrc: string,
    q: Query,
  ) => {
    if (fromSrc !== '-')
      throw notSupported(
        'Importing from a URL is not supported by berth: send the archive as the request body (fromSrc=-)',
      );
    if ((qs(q, 'changes') ?? '') !== '' || qsAll(q, 'changes').length > 1)
      throw notSupported('Import with changes (docker import --change) is not supported by berth');
    const repo = qs(q, 'repo') ?? '';
    if (repo === '')
      throw invalid('repo', 'berth names every imported image: give a repository (and tag)');
    const tag = qs(q, 'tag') ?? '';
    const body = streamBody(req);
    const s = messageStream(reply, { lazy: true });
    try {
      const img = await images.importRootfs(body, tag ? withTag(repo, tag) : repo);
      s.write({ status: `sha256:${img.id}` });
      s.end();
    } catch (e) {
      s.fail(e);
    }
  };

  const push = async (req: FastifyRequest, reply: FastifyReply, name: string) => {
    const q = req.query as Query;
    const tag = qs(q, 'tag') ?? '';
    let refs: string[];
    if (tag) refs = [withTag(name, tag)];
    else if (hasTagOrDigest(name)) refs = [name];
    else {
      // No tag: every tag of the repository, as Docker does.
      refs = [...new Set(images.list().flatMap((i) => images.tagsOf(i.id)))].filter(
        (t) => t.slice(0, t.lastIndexOf(':')) === name,
      );
      if (refs.length === 0)
        throw new BerthError(
          'IMAGE_NOT_FOUND',
          `An image does not exist locally with the tag: ${name}`,
          { field: 'image' },
        );
    }
    for (const r of refs) {
      checkPullReference(r, undefined);
      images.resolve(r);
    }
    const credentials = registryAuth(req);
    const s: MessageStream = messageStream(reply);
    try {
      for (const r of refs) {
        let size = 0;
        const digest = await transfer.push(
          r,
          (m) => {
            const got = /: digest: \S+ size: (\d+)$/.exec(m.status ?? '');
            if (got) size = Number(got[1]);
            s.progress(m);
          },
          s.signal,
          credentials ? { credentials } : {},
        );
        s.write({
          progressDetail: {},
          aux: { Tag: r.slice(r.lastIndexOf(':') + 1), Digest: digest, Size: size },
        });
      }
      s.end();
    } catch (e) {
      s.fail(e);
    }
  };

  // /images/{name}/json|history|get and /images/{name}/tag|push, the name holding slashes.
  const split = (req: FastifyRequest, actions: readonly string[]) => {
    const rest = (req.params as Record<string, string>)['*'] ?? '';
    const slash = rest.lastIndexOf('/');
    const action = rest.slice(slash + 1);
    if (slash <= 0 || !actions.includes(action)) return undefined;
    return { name: rest.slice(0, slash), action };
  };

  app.get('/images/*', async (req, reply) => {
    const p = split(req, ['json', 'history', 'get']);
    if (!p) return reply.callNotFound();
    if (p.action === 'get') return save([p.name], reply);
    const img = images.resolve(p.name);
    return p.action === 'json' ? imageInspect(images, img) : imageHistory(images, img);
  });

  app.post('/images/*', async (req, reply) => {
    const p = split(req, ['tag', 'push']);
    if (!p) return reply.callNotFound();
    if (p.action === 'push') return push(req, reply, p.name);
    const q = req.query as Query;
    const repo = qs(q, 'repo') ?? '';
    if (repo === '') throw invalid('repo', 'give the repository to tag the image as');
    const tag = qs(q, 'tag') ?? '';
    images.tag(p.name, tag ? withTag(repo, tag) : repo);
    return reply.code(201).send();
  });

  app.delete('/images/*', async (req) => {
    const name = (req.params as Record<string, string>)['*'] ?? '';
    if (name === '') throw invalid('name', 'give an image');
    const q = req.query as Query;
    return images.remove(name, qBool(q, 'force'));
  });
}
