// A stream of JSON messages, one a line (pull, push and load progress, berth's and
// Docker's). Once the stream has started, a failure is its last message; before, it is an
// ordinary error response. A lazy stream sends its headers with its first message, so a
// request refused before any (an archive that is no archive) gets a plain error.
import type { FastifyReply } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { BerthError } from '../util/errors.ts';
import { toBerthError } from './errors.ts';

export interface LineStream<T> {
  write(m: T): void;
  // Ends the stream with the error as its last message; throws it when nothing was sent.
  fail(e: unknown): void;
  end(): void;
  // Aborted when the client goes away: the work stops (a pull keeps its parts).
  readonly signal: AbortSignal;
}

export interface LineStreamOptions<T> {
  readonly contentType: string;
  readonly eol: string;
  readonly errorMessage: (e: BerthError) => T;
  readonly lazy?: boolean;
}

export function lineStream<T>(reply: FastifyReply, o: LineStreamOptions<T>): LineStream<T> {
  const res: ServerResponse = reply.raw;
  let started = false;
  const start = () => {
    if (started) return;
    started = true;
    reply.hijack();
    res.writeHead(200, { 'Content-Type': o.contentType });
    res.flushHeaders();
  };
  if (!o.lazy) start();
  const ac = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) ac.abort(new Error('the client went away'));
  });
  const write = (m: T) => {
    start();
    if (!res.destroyed) res.write(`${JSON.stringify(m)}${o.eol}`);
  };
  return {
    write,
    fail: (e) => {
      if (!started) throw e;
      write(o.errorMessage(toBerthError(e)));
      res.end();
    },
    end: () => {
      start();
      res.end();
    },
    signal: ac.signal,
  };
}
