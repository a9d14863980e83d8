// HTTP upgrade ("hijack") routes: attach and exec start turn the connection into a raw
// bidirectional stream, as Docker's API does (101 UPGRADED, then bytes both ways).
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { BerthError } from '../util/errors.ts';
import { statusFor, toBerthError } from './errors.ts';

// A handler validates first (an error then is a plain HTTP error response) and returns the
// part that runs on the upgraded stream.
const MAX_BODY = 64 * 1024;

type Handler = (m: RegExpExecArray, q: URLSearchParams) => Promise<(sock: Duplex) => Promise<void>>;

export class UpgradeRouter {
  private readonly routes: { method: string; re: RegExp; fn: Handler }[] = [];

  add(method: string, re: RegExp, fn: Handler): void {
    this.routes.push({ method, re, fn });
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
        new BerthError('NOT_IMPLEMENTED', `No such endpoint: ${req.method} ${url.pathname}`),
      );
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
        await readExactly(sock, head, len);
      } catch (e) {
        fail(sock, toBerthError(e));
        return;
      }
    } else if (head.length > 0) sock.unshift(head);
    const m = route.re.exec(url.pathname) as RegExpExecArray;
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

function fail(sock: Duplex, e: BerthError): void {
  const body = JSON.stringify({ code: e.code, message: e.message });
  sock.end(
    `HTTP/1.1 ${statusFor(e)} Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

// Reads a small request body off a socket about to be hijacked. Bounded, and it gives up
// when the client hangs up, so a lying Content-Length cannot hold memory or a request.
async function readExactly(sock: Duplex, head: Buffer, n: number): Promise<Buffer> {
  let buf = head;
  while (buf.length < n) {
    const chunk: Buffer | null = sock.read() as Buffer | null;
    if (chunk) {
      buf = Buffer.concat([buf, chunk]);
      continue;
    }
    if (sock.readableEnded || sock.destroyed)
      throw new BerthError('INVALID_ARGUMENT', 'Invalid body: the connection ended before it');
    await new Promise<void>((r) => {
      const done = () => {
        sock.off('readable', done);
        sock.off('end', done);
        sock.off('close', done);
        r();
      };
      sock.once('readable', done);
      sock.once('end', done);
      sock.once('close', done);
    });
  }
  if (buf.length > n) sock.unshift(buf.subarray(n));
  return buf.subarray(0, n);
}
