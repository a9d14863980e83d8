// HTTP upgrade ("hijack") routes: attach and exec start turn the connection into a raw
// bidirectional stream, as Docker's API does (101 UPGRADED, then bytes both ways).
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { BerthError, invalid } from '../util/errors.ts';
import { toBerthError } from './errors.ts';
import { socketError as fail } from './limits.ts';

// A handler validates first (an error then is a plain HTTP error response) and returns the
// part that runs on the upgraded stream.
const MAX_BODY = 64 * 1024;
// A path parameter, decoded: an id, a name or an id prefix.
const MAX_PARAM = 256;
const MAX_QUERY_VALUE = 256;

type Handler = (m: RegExpExecArray, q: URLSearchParams) => Promise<(sock: Duplex) => Promise<void>>;

export class UpgradeRouter {
  private readonly routes: { method: string; re: RegExp; fn: Handler; query: readonly string[] }[] =
    [];
  private readonly readTimeoutMs: number;

  constructor(o: { readTimeoutMs: number } = { readTimeoutMs: 60_000 }) {
    this.readTimeoutMs = o.readTimeoutMs;
  }

  // `query`: the parameters the route takes; any other is refused.
  add(method: string, re: RegExp, fn: Handler, query: readonly string[] = []): void {
    this.routes.push({ method, re, fn, query });
  }

  matches(req: IncomingMessage): boolean {
    const path = (req.url ?? '').split('?')[0] ?? '';
    return this.routes.some((r) => r.method === req.method && r.re.test(path));
  }

  async handle(req: IncomingMessage, sock: Duplex, head: Buffer): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://berth');
    const route = this.routes.find((r) => r.method === req.method && r.re.test(url.pathname));
    sock.on('error', () => undefined);
    if (!route) {
      fail(
        sock,
        new BerthError('ENDPOINT_NOT_FOUND', `No such endpoint: ${req.method} ${url.pathname}`),
      );
      return;
    }
    const m = route.re.exec(url.pathname) as RegExpExecArray;
    try {
      checkRequest(m, url.searchParams, route.query);
    } catch (e) {
      fail(sock, toBerthError(e));
      return;
    }
    // A request body (Docker's exec start sends one) is read off the socket first.
    const len = Number(req.headers['content-length'] ?? 0);
    if (!Number.isSafeInteger(len) || len < 0 || len > MAX_BODY) {
      fail(sock, new BerthError('REQUEST_TOO_LARGE', `Invalid body: over ${MAX_BODY} bytes`));
      return;
    }
    if (len > 0) {
      try {
        await readExactly(sock, head, len, this.readTimeoutMs);
      } catch (e) {
        fail(sock, toBerthError(e));
        return;
      }
    } else if (head.length > 0) sock.unshift(head);
    let run: (sock: Duplex) => Promise<void>;
    try {
      run = await route.fn(m, url.searchParams);
    } catch (e) {
      fail(sock, toBerthError(e));
      return;
    }
    sock.write(
      'HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n',
    );
    try {
      await run(sock);
    } catch (e) {
      // The 101 is out; the error travels as the stream's last words.
      const be = toBerthError(e);
      sock.end(`Error: ${be.message}\n`);
    }
  }
}

// Checked before a handler sees them: path parameters decode, are short and hold no NUL;
// only the route's query parameters, each short and without NUL.
function checkRequest(m: RegExpExecArray, q: URLSearchParams, allowed: readonly string[]): void {
  for (const raw of m.slice(1)) {
    let v: string;
    try {
      v = decodeURIComponent(raw ?? '');
    } catch {
      throw invalid('path', `"${(raw ?? '').slice(0, 64)}" is not URL-encoded text`);
    }
    if (v.length === 0 || v.length > MAX_PARAM)
      throw invalid('path', `a name or id is 1 to ${MAX_PARAM} characters`);
    if (v.includes('\0')) throw invalid('path', 'contains a NUL byte');
  }
  for (const [k, v] of q) {
    if (!allowed.includes(k)) throw invalid(k, 'unknown query parameter');
    if (v.length > MAX_QUERY_VALUE || v.includes('\0'))
      throw invalid(k, `must be at most ${MAX_QUERY_VALUE} characters, without NUL`);
  }
}

// Reads a small request body off a socket about to be hijacked. Bounded, and it gives up
// when the client hangs up, so a lying Content-Length cannot hold memory or a request.
// Docker's hijacked routes (docker/hijack.ts) read theirs with it too.
export async function readExactly(
  sock: Duplex,
  head: Buffer,
  n: number,
  timeoutMs: number,
): Promise<Buffer> {
  let buf = head;
  while (buf.length < n) {
    const chunk: Buffer | null = sock.read() as Buffer | null;
    if (chunk) {
      buf = Buffer.concat([buf, chunk]);
      continue;
    }
    if (sock.readableEnded || sock.destroyed)
      throw new BerthError('INVALID_ARGUMENT', 'Invalid body: the connection ended before it');
    const arrived = await new Promise<boolean>((r) => {
      const done = (v: boolean) => {
        clearTimeout(timer);
        sock.off('readable', more);
        sock.off('end', more);
        sock.off('close', more);
        r(v);
      };
      const more = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      sock.once('readable', more);
      sock.once('end', more);
      sock.once('close', more);
    });
    if (!arrived)
      throw new BerthError(
        'REQUEST_TIMEOUT',
        `Request timeout: no byte of the body arrived for ${Math.round(timeoutMs / 1000)}s`,
      );
  }
  if (buf.length > n) sock.unshift(buf.subarray(n));
  return buf.subarray(0, n);
}
