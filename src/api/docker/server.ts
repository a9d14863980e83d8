// The Docker Engine API (v1.41) on its own socket, so the real docker CLI, docker-compose
// and dockerode drive berthd unchanged. It translates Docker's shapes to the engine's and
// back; berth's behaviour underneath stays (runner-less containers, bounded logs, durable
// events). Versioned paths (/v1.NN/...) and unversioned ones are the same routes.
import Fastify, { type FastifyInstance } from 'fastify';
import type { ApiDeps } from '../server.ts';
import { toBerthError } from '../errors.ts';
import {
  BODY_LIMIT,
  DEFAULT_LIMITS,
  MAX_HEADERS_COUNT,
  MAX_PARAM_LENGTH,
  clientErrorHandler,
  httpServerOptions,
} from '../limits.ts';
import { invalid } from '../../util/errors.ts';
import { dockerError, registerDockerErrors } from './errors.ts';
import { DockerHijack } from './hijack.ts';
import { registerDockerContainerRoutes } from './containers.ts';
import { registerDockerImageRoutes } from './images.ts';
import { registerDockerNetworkRoutes } from './networks.ts';
import { registerDockerSystemRoutes } from './system.ts';
import { registerDockerVolumeRoutes } from './volumes.ts';
import {
  DOCKER_API_VERSION,
  DOCKER_MIN_API_VERSION,
  checkApiVersion,
  stripVersion,
} from './version.ts';

export { DOCKER_API_VERSION, DOCKER_MIN_API_VERSION, stripVersion };

export interface DockerApi {
  readonly app: FastifyInstance;
  // attach and exec start: the server's 'upgrade' events go to upgrades.handle.
  readonly upgrades: DockerHijack;
}

export function buildDockerApi(deps: ApiDeps): DockerApi {
  const limits = deps.limits ?? DEFAULT_LIMITS;
  const upgrades = new DockerHijack(limits.readTimeoutMs);
  const app = Fastify({
    logger: false,
    rewriteUrl: (req) => stripVersion(req.url ?? '/'),
    bodyLimit: BODY_LIMIT,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    http: {
      ...httpServerOptions(limits),
      // Only attach and exec start switch protocols; an Upgrade header elsewhere (Docker's
      // /session and /grpc) gets an ordinary answer.
      shouldUpgradeCallback: (req) => upgrades.matches(req),
    },
    clientErrorHandler,
    frameworkErrors: (err, req, reply) => {
      if (!req.raw.complete) reply.header('Connection', 'close');
      return dockerError(reply, toBerthError(err));
    },
    ajv: { customOptions: { allErrors: false, coerceTypes: true, removeAdditional: false } },
  });
  app.server.maxHeadersCount = MAX_HEADERS_COUNT;
  registerDockerErrors(app);

  // Docker's clients send Content-Type: application/json on bodiless POSTs too.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const s = (body as string).trim();
    if (s === '') return done(null, undefined);
    try {
      done(null, JSON.parse(s) as unknown);
    } catch {
      done(invalid('body', 'not JSON'), undefined);
    }
  });

  app.addHook('onRequest', async (req) => {
    checkApiVersion(req.originalUrl);
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    // The docker CLI reads an error's message only under exactly this type; with a
    // charset after it, it prints the raw JSON.
    const ct = reply.getHeader('content-type');
    if (typeof ct === 'string' && ct.startsWith('application/json'))
      reply.header('content-type', 'application/json');
    reply.header('Api-Version', DOCKER_API_VERSION);
    reply.header('Docker-Experimental', 'false');
    reply.header('Ostype', 'linux');
    reply.header('Server', `berth/${deps.version} (linux)`);
    return payload;
  });

  registerDockerSystemRoutes(app, deps);
  registerDockerContainerRoutes(app, deps, upgrades);
  registerDockerImageRoutes(app, deps);
  registerDockerNetworkRoutes(app, deps);
  registerDockerVolumeRoutes(app, deps);
  return { app, upgrades };
}
