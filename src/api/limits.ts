// The API's limits and its checks that hold for every route: how big a request may be, how
// long a client may take to send it, and what no field may ever carry. Everything here runs
// before a handler, so a request it refuses has made nothing.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { Transform, type Duplex, type Readable, type TransformCallback } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler, ValueErrorType, type TypeCheck } from '@sinclair/typebox/compiler';
import { BerthError, invalid } from '../util/errors.ts';
import { statusFor } from './errors.ts';

export interface ApiLimits {
  // How long a client may take to send a request's headers, and how long it may pause in
  // the middle of a request body (an image upload can take as long as it needs while bytes
  // keep coming).
  readonly readTimeoutMs: number;
}

export const DEFAULT_LIMITS: ApiLimits = { readTimeoutMs: 60_000 };

// JSON bodies; image archives and root filesystems stream and are bounded by disk only.
export const BODY_LIMIT = 1024 * 1024;
// The request line and all headers together (Node's default, stated).
export const MAX_HEADER_SIZE = 16 * 1024;
export const MAX_HEADERS_COUNT = 100;
// A path parameter, still URL-encoded: long enough for any image reference, each route's
// schema bounds the decoded value.
export const MAX_PARAM_LENGTH = 4096;
// Nothing berth takes is nested deeper than a few levels; a body that is, is an attack on
// the parser or the validator, not a request.
const MAX_DEPTH = 32;

// The HTTP server's options for these limits.
export function httpServerOptions(l: ApiLimits): {
  maxHeaderSize: number;
  headersTimeout: number;
  requestTimeout: number;
  connectionsCheckingInterval: number;
} {
  return {
    maxHeaderSize: MAX_HEADER_SIZE,
    headersTimeout: l.readTimeoutMs,
    // Whole requests are not timed: an image load streams for as long as it needs.
    requestTimeout: 0,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(l.readTimeoutMs / 4))),
  };
}

// Writes an error response straight to a socket: for errors Node's HTTP parser finds
// before there is a request (malformed, too large headers, too slow), and for hijacked
// routes before they switch protocols.
export function socketError(sock: Socket | Duplex, e: BerthError): void {
  const body = JSON.stringify({ code: e.code, message: e.message });
  const status = statusFor(e);
  const head =
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`;
  if (!sock.writable) {
    sock.destroy();
    return;
  }
  sock.end(head + body, () => sock.destroy());
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Payload Too Large',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};

// Node's clientError: the request never became one.
export function clientErrorHandler(err: NodeJS.ErrnoException, sock: Socket): void {
  if (err.code === 'ECONNRESET' || sock.destroyed) return;
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    socketError(
      sock,
      new BerthError('REQUEST_TIMEOUT', 'Request timeout: the headers did not arrive in time'),
    );
  else if (err.code === 'HPE_HEADER_OVERFLOW')
    socketError(
      sock,
      new BerthError(
        'HEADERS_TOO_LARGE',
        `Invalid headers: the request line and headers are over ${MAX_HEADER_SIZE} bytes`,
      ),
    );
  else
    socketError(
      sock,
      new BerthError(
        'INVALID_ARGUMENT',
        `Invalid request: malformed HTTP (${err.code ?? 'parse error'})`,
      ),
    );
}

interface RouteGuards {
  // The route takes a byte stream (image load and import), not JSON.
  streamBody?: boolean;
  strictBody?: TypeCheck<TSchema>;
  // The route takes no body; Docker-style clients' `{}` and `null` pass.
  noBody?: boolean;
}

const guards = (req: FastifyRequest): RouteGuards => req.routeOptions.config as RouteGuards;

// Installs the checks every route gets. Must run before the routes are added.
export function installGuards(app: FastifyInstance, l: ApiLimits): void {
  // JSON types are not coerced: `"name": 123` is a wrong type, not the name "123". The
  // AJV validator Fastify runs coerces (querystrings and path parameters need that), so a
  // body is first checked against its schema without coercion.
  // A query parameter or path parameter no route declares is refused, not ignored: a
  // misspelt `forse=1` must not quietly do the unforced thing. A route without a query
  // schema takes no query, and one without a body schema no body (but `{}`).
  app.addHook('onRoute', (route) => {
    const schema = { ...route.schema };
    const body = schema.body as TSchema | undefined;
    if (body !== undefined)
      route.config = { ...route.config, strictBody: TypeCompiler.Compile(body) };
    else if (!(route.config as RouteGuards | undefined)?.streamBody)
      route.config = { ...route.config, noBody: true };
    schema.querystring = closed(schema.querystring) ?? NO_QUERY;
    const params = closed(schema.params);
    if (params !== undefined) schema.params = params;
    route.schema = schema;
  });

  // A body the client stops sending in the middle is a held connection: it times out.
  app.addHook('preParsing', async (req, reply, payload) => {
    if (req.method === 'GET' || req.method === 'HEAD' || !hasBody(req.raw)) return payload;
    const g = guardBody(payload, l.readTimeoutMs);
    // Answered (a 413 on the declared length, say): the rest of the body is no one's.
    reply.raw.once('close', () => g.stop());
    return g;
  });

  // Node's own check (requireHostHeader) answers without a body; with it off, this one
  // answers like every other error.
  app.addHook('onRequest', async (req) => {
    if (req.raw.httpVersion === '1.1' && req.headers.host === undefined)
      throw invalid('Host', 'an HTTP/1.1 request needs a Host header');
  });

  // Image archives and root filesystems arrive as a raw stream that the handler consumes;
  // only the routes that take one accept one.
  app.addContentTypeParser(
    ['application/x-tar', 'application/octet-stream'],
    (req, payload, done) => {
      if (guards(req).streamBody) done(null, payload);
      else
        done(
          new BerthError(
            'INVALID_ARGUMENT',
            `Invalid body: ${req.method} ${req.routeOptions.url ?? ''} takes JSON, not a byte stream`,
            { field: 'body' },
          ),
        );
    },
  );

  app.addHook('preValidation', async (req) => {
    checkStrings(req.params, 'path');
    checkStrings(req.query, 'query');
    const body = req.body as unknown;
    const g = guards(req);
    if (g.noBody && body !== undefined && body !== null && !isEmptyObject(body))
      throw invalid('body', `${req.method} ${req.routeOptions.url ?? ''} takes no body`);
    if (body === null || typeof body !== 'object' || typeof (body as Readable).pipe === 'function')
      return;
    checkStrings(body, '');
    const strict = g.strictBody;
    if (!strict || strict.Check(body)) return;
    const e = strict.Errors(body).First();
    if (e && TYPE_ERRORS.has(e.type)) {
      const field = e.path.replace(/^\//, '').replace(/\//g, '.') || 'body';
      throw invalid(field, typeMessage(e.schema));
    }
    // Any other failure is left to the validator's own (usual) message.
  });
}

const NO_QUERY = { type: 'object', properties: {}, additionalProperties: false };

function closed(schema: unknown): unknown {
  const s = schema as { type?: unknown; additionalProperties?: unknown } | undefined;
  if (s === undefined || s.type !== 'object' || s.additionalProperties !== undefined) return s;
  return { ...s, additionalProperties: false };
}

const TYPE_ERRORS = new Set<ValueErrorType>([
  ValueErrorType.String,
  ValueErrorType.Number,
  ValueErrorType.Integer,
  ValueErrorType.Boolean,
  ValueErrorType.Null,
  ValueErrorType.Object,
  ValueErrorType.Array,
  ValueErrorType.Tuple,
  ValueErrorType.Union,
  ValueErrorType.Literal,
]);

function typeMessage(schema: TSchema): string {
  const s = schema as { type?: unknown; const?: unknown; anyOf?: { const?: unknown }[] };
  if (s.const !== undefined) return `must be ${JSON.stringify(s.const)}`;
  if (s.anyOf?.every((a) => a.const !== undefined))
    return `must be one of ${s.anyOf.map((a) => JSON.stringify(a.const)).join(', ')}`;
  if (typeof s.type === 'string')
    return `must be ${/^[aeiou]/.test(s.type) ? 'an' : 'a'} ${s.type}`;
  return 'has the wrong type';
}

const isEmptyObject = (v: unknown): boolean =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0;

function hasBody(raw: IncomingMessage): boolean {
  const len = raw.headers['content-length'];
  return raw.headers['transfer-encoding'] !== undefined || (len !== undefined && len !== '0');
}

// No field of any request may hold a NUL byte (a path cut short by the kernel, a name that
// is two names) or a number past 2^53, and no body may nest deeper than berth's own
// shapes ever do.
function checkStrings(v: unknown, where: string): void {
  const stack: { v: unknown; path: string; depth: number }[] = [{ v, path: where, depth: 0 }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { v: x, path, depth } = item;
    if (typeof x === 'string') {
      if (x.includes('\0')) throw invalid(path || 'body', 'contains a NUL byte');
      continue;
    }
    // JSON numbers past 2^53 are already rounded when parsed: no count, size or time of
    // berth's is that large.
    if (typeof x === 'number') {
      if (!Number.isFinite(x) || Math.abs(x) > Number.MAX_SAFE_INTEGER)
        throw invalid(path || 'body', `${x} is out of range`);
      continue;
    }
    if (x === null || typeof x !== 'object') continue;
    if (depth >= MAX_DEPTH) throw invalid(path || 'body', `nested deeper than ${MAX_DEPTH} levels`);
    for (const [k, c] of Object.entries(x)) {
      const p = path ? `${path}.${k}` : k;
      if (k.includes('\0')) throw invalid(path || 'body', 'has a key with a NUL byte');
      stack.push({ v: c, path: p, depth: depth + 1 });
    }
  }
}

// Passes a request body through, and fails it with REQUEST_TIMEOUT when no byte has
// arrived for `ms` while its reader waits for one. Waiting on a slow reader (backpressure:
// the source is paused) is not the client's pause.
class BodyGuard extends Transform {
  private last = Date.now();
  private readonly timer: NodeJS.Timeout;
  private readonly src: Readable;

  constructor(src: Readable, ms: number) {
    super();
    this.src = src;
    this.timer = setInterval(
      () => {
        const now = Date.now();
        if (src.readableFlowing === false || src.readableEnded) this.last = now;
        else if (now - this.last > ms)
          this.destroy(
            new BerthError(
              'REQUEST_TIMEOUT',
              `Request timeout: no byte of the body arrived for ${Math.round(ms / 1000)}s`,
            ),
          );
      },
      Math.max(100, Math.min(1000, Math.floor(ms / 4))),
    );
    this.timer.unref();
    // Whoever reads the body gets its errors; with no reader left, an error is no crash.
    this.on('error', () => undefined);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.last = Date.now();
    cb(null, chunk);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    clearInterval(this.timer);
    this.src.unpipe(this);
    cb(err);
  }

  override _flush(cb: TransformCallback): void {
    clearInterval(this.timer);
    cb();
  }
}

function guardBody(src: Readable, ms: number): BodyGuard {
  const g = new BodyGuard(src, ms);
  // Fastify checks the bytes it got against Content-Length with this.
  src.pipe(g);
  src.on('error', (e) => g.destroy(e));
  src.on('close', () => {
    if (!src.readableEnded && !g.destroyed)
      g.destroy(invalid('body', 'the client closed the connection before the body ended'));
  });
  return g;
}
