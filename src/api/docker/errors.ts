// Docker's error shape: {"message": "..."} with Docker's status codes (404 makes `docker
// run` pull, 409 is a conflict, 304 not modified, 501 what berth does not do). berth's
// error classes map to the same statuses as on the native API (api/errors.ts).
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

export function registerDockerErrors(app: FastifyInstance): void {
  app.setErrorHandler((err, req, reply) => {
    // The rest of an unread body (too large, refused) is not waited for.
    if (!req.raw.complete) reply.header('Connection', 'close');
    return dockerError(reply, err);
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({
      message: `page not found: ${req.method} ${(req.url.split('?')[0] ?? '').slice(0, 256)}`,
    }),
  );
}
