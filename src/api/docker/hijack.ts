// Docker's hijacked streams (attach, exec start): with `Upgrade: tcp` the connection
// answers `101 UPGRADED` and carries raw bytes both ways (the container's output first,
// the client's stdin into it, a half-close ending stdin, the close after the exit). A
// client that does not ask to upgrade (dockerode with hijack off) gets the same stream as a
// plain 200 response body. Unlike the native router this one takes Docker's many query
// parameters and answers errors in Docker's shape.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Duplex } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { BerthError, invalid } from '../../util/errors.ts';
import { readExactly } from '../upgrade.ts';
import { socketDockerError } from './errors.ts';
import { checkApiVersion, stripVersion } from './version.ts';

export const RAW_STREAM = 'application/vnd.docker.raw-stream';
export const MULTIPLEXED_STREAM = 'application/vnd.docker.multiplexed-stream';

export interface Hijacked {
  readonly contentType: string;
  // Runs on the stream; resolves when the handler has nothing more to do with it (an
  // attach resolves once connected: the monitor closes the stream after the exit).
  run(sock: Duplex): Promise<void>;
}

export type HijackHandler = (
  m: RegExpExecArray,
  q: URLSearchParams,
  body: unknown,
) => Promise<Hijacked>;

const MAX_BODY = 64 * 1024;
const MAX_PARAM = 256;

export class DockerHijack {
  private readonly routes: { method: string; re: RegExp; fn: HijackHandler }[] = [];
  private readonly readTimeoutMs: number;

  constructor(readTimeoutMs = 60_000) {
    this.readTimeoutMs = readTimeoutMs;
  }

  add(method: string, re: RegExp, fn: HijackHandler): void {
    this.routes.push({ method, re, fn });
  }

  private find(method: string | undefined, url: string) {
    const path = stripVersion(url.split('?')[0] ?? '');
    return this.routes.find((r) => r.method === method && r.re.test(path));
  }

  // For the HTTP server's shouldUpgradeCallback: only these routes switch protocols.
  matches(req: IncomingMessage): boolean {
    return this.find(req.method, req.url ?? '') !== undefined;
  }

  async handle(req: IncomingMessage, sock: Duplex, head: Buffer): Promise<void> {
    sock.on('error', () => undefined);
    const raw = req.url ?? '/';
    const route = this.find(req.method, raw);
    if (!route) {
      socketDockerError(
        sock,
        new BerthError('ENDPOINT_NOT_FOUND', `page not found: ${req.method} ${raw.split('?')[0]}`),
      );
      return;
    }
    let h: Hijacked;
    try {
      checkApiVersion(raw);
      const url = new URL(stripVersion(raw), 'http://docker');
      const m = matchParams(route.re, url.pathname);
      if (req.headers['transfer-encoding'])
        throw invalid('body', 'a chunked body is not taken on a hijacked request');
      const len = Number(req.headers['content-length'] ?? 0);
      if (!Number.isSafeInteger(len) || len < 0 || len > MAX_BODY)
        throw new BerthError('REQUEST_TOO_LARGE', `Invalid body: over ${MAX_BODY} bytes`);
      let body: unknown;
      if (len > 0) {
        const buf = await readExactly(sock, head, len, this.readTimeoutMs);
        body = parseJsonBody(buf);
      } else if (head.length > 0) sock.unshift(head);
      h = await route.fn(m, url.searchParams, body);
    } catch (e) {
      socketDockerError(sock, e);
      return;
    }
    sock.write(
      `HTTP/1.1 101 UPGRADED\r\nContent-Type: ${h.contentType}\r\nConnection: Upgrade\r\n` +
        'Upgrade: tcp\r\nApi-Version: 1.41\r\n\r\n',
    );
    try {
      await h.run(sock);
    } catch (e) {
      // The 101 is out: the error is the stream's last words.
      sock.end(`Error: ${(e as Error).message}\n`);
    }
  }

  // The same stream for a client that did not ask to upgrade: a 200 whose body it is.
  async serve(req: FastifyRequest, reply: FastifyReply, fn: HijackHandler): Promise<void> {
    const route = this.routes.find((r) => r.fn === fn);
    if (!route) throw new BerthError('INTERNAL', 'Internal error: no such hijacked route');
    const url = new URL(req.url, 'http://docker');
    const m = matchParams(route.re, url.pathname);
    const h = await fn(m, url.searchParams, req.body);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'Content-Type': h.contentType, 'Api-Version': '1.41' });
    res.flushHeaders();
    const d = responseDuplex(res);
    try {
      await h.run(d);
    } catch (e) {
      d.end(`Error: ${(e as Error).message}\n`);
    }
  }
}

function matchParams(re: RegExp, path: string): RegExpExecArray {
  const m = re.exec(path);
  if (!m) throw new BerthError('ENDPOINT_NOT_FOUND', `page not found: ${path}`);
  for (let i = 1; i < m.length; i++) {
    let v: string;
    try {
      v = decodeURIComponent(m[i] ?? '');
    } catch {
      throw invalid('path', `"${(m[i] ?? '').slice(0, 64)}" is not URL-encoded text`);
    }
    if (v.length === 0 || v.length > MAX_PARAM || v.includes('\0'))
      throw invalid('path', `a name or id is 1 to ${MAX_PARAM} characters, without NUL`);
    m[i] = v;
  }
  return m;
}

function parseJsonBody(buf: Buffer): unknown {
  const s = buf.toString('utf8').trim();
  if (s === '') return undefined;
  try {
    return JSON.parse(s) as unknown;
  } catch {
    throw invalid('body', 'not JSON');
  }
}

// A response as a Duplex: what is written goes out as the body; the read side never
// carries anything and ends when the client goes away.
function responseDuplex(res: ServerResponse): Duplex {
  const d = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      if (res.destroyed) return cb();
      if (res.write(chunk)) cb();
      else {
        const go = () => {
          res.off('drain', go);
          res.off('close', go);
          cb();
        };
        res.on('drain', go);
        res.on('close', go);
      }
    },
    final(cb) {
      res.end();
      cb();
    },
  });
  res.on('close', () => {
    d.push(null);
    d.destroy();
  });
  return d;
}
