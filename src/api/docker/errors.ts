// Docker's error shape: {"message": "..."} with Docker's status codes (404 makes `docker
// run` pull, 409 is a conflict, 304 not modified, 501 what berth does not do). berth's
// error classes map to the same statuses as on the native API (api/errors.ts).
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { BerthError } from '../../util/errors.ts';
import { toBerthError, statusFor } from '../errors.ts';

export function dockerStatus(err: unknown): { status: number; message: string } {
  const e = toBerthError(err);
  return { status: statusFor(e), message: e.message };
}

export function dockerError(reply: FastifyReply, err: unknown): FastifyReply {
  const { status, message } = dockerStatus(err);
  return reply.code(status).send({ message });
}

// What berth does not do on this surface: a clear answer, never a hang.
export function notSupported(what: string): BerthError {
  return new BerthError('NOT_IMPLEMENTED', `${what} is not supported by berth`);
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Payload Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};

// An error on a connection that was to be hijacked, before it switched protocols.
export function socketDockerError(sock: Duplex, err: unknown): void {
  const { status, message } = dockerStatus(err);
  const body = JSON.stringify({ message }) + '\n';
  const head =
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\nContent-Type: application/json\r\n` +
    `Api-Version: 1.41\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`;
  if (!sock.writable) {
    sock.destroy();
    return;
  }
  sock.end(head + body, () => sock.destroy());
}

const DRAIN_BYTES = 64 << 20;
const DRAIN_MS = 5_000;

// Reads and drops what is left of a request body; true when it ended within the bounds.
function drained(req: IncomingMessage, maxBytes: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    let n = 0;
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      req.off('data', onData).off('end', onEnd).off('error', onEnd);
      if (!ok) req.pause();
      resolve(ok);
    };
    const onData = (b: Buffer) => {
      n += b.length;
      if (n > maxBytes) finish(false);
    };
    const onEnd = () => finish(req.complete);
    const timer = setTimeout(() => finish(false), ms);
    req.on('data', onData).on('end', onEnd).on('error', onEnd);
    req.resume();
  });
}

// Before a refusal of a request whose body is unread: the client is still sending it, and
// the docker CLI reports a broken pipe instead of the answer if the connection closes
// under its write. A body of reasonable size is read and dropped first; a larger one (or
// a client that stalls) gets the answer and the connection closed.
export async function dropUnreadBody(req: IncomingMessage, reply: FastifyReply): Promise<void> {
  if (!req.complete && !(await drained(req, DRAIN_BYTES, DRAIN_MS)))
    reply.header('Connection', 'close');
}

export function registerDockerErrors(app: FastifyInstance): void {
  app.setErrorHandler(async (err, req, reply) => {
    await dropUnreadBody(req.raw, reply);
    return dockerError(reply, err);
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({
      message: `page not found: ${req.method} ${(req.url.split('?')[0] ?? '').slice(0, 256)}`,
    }),
  );
}
