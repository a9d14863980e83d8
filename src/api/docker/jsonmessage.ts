// Docker's progress streams (pull, push, load, import): one JSON object per line, sent as
// application/json, which is what makes the docker CLI read it as messages rather than copy
// it. Once the stream has started, a failure is its last message ({error, errorDetail}),
// as Docker's are; before, it is an ordinary error response.
import type { FastifyReply } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { ProgressMessage } from '../../engine/index.ts';
import { toBerthError } from '../errors.ts';

export interface DockerMessage {
  readonly id?: string;
  readonly status?: string;
  readonly stream?: string;
  readonly progressDetail?: { readonly current?: number; readonly total?: number };
  readonly error?: string;
  // Docker's code is a number when there is one; berth's stable codes stay off the wire here
  // (the docker CLI would fail to decode a string).
  readonly errorDetail?: { readonly message: string };
  readonly aux?: Record<string, unknown>;
}

export interface MessageStream {
  write(m: DockerMessage): void;
  // The engine's progress, in Docker's form.
  progress(m: ProgressMessage): void;
  // Ends the stream with the error as its last message; throws it when nothing was sent.
  fail(e: unknown): void;
  end(): void;
  readonly signal: AbortSignal;
}

export function fromProgress(m: ProgressMessage): DockerMessage {
  const { errorDetail, ...rest } = m;
  return errorDetail ? { ...rest, errorDetail: { message: errorDetail.message } } : rest;
}

// lazy: the headers go with the first message, so a request the engine refuses before any
// (an archive that is no archive) is a plain error response. Otherwise they go at once.
export function messageStream(reply: FastifyReply, o: { lazy?: boolean } = {}): MessageStream {
  const res: ServerResponse = reply.raw;
  let started = false;
  const start = () => {
    if (started) return;
    started = true;
    reply.hijack();
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.flushHeaders();
  };
  if (!o.lazy) start();
  const ac = new AbortController();
  // The client went away: stop the work (a pull keeps its parts for the next one).
  res.on('close', () => {
    if (!res.writableFinished) ac.abort(new Error('the client went away'));
  });
  const write = (m: DockerMessage) => {
    start();
    if (!res.destroyed) res.write(`${JSON.stringify(m)}\r\n`);
  };
  return {
    write,
    progress: (m) => write(fromProgress(m)),
    fail: (e) => {
      if (!started) throw e;
      const message = toBerthError(e).message;
      write({ errorDetail: { message }, error: message });
      res.end();
    },
    end: () => {
      start();
      res.end();
    },
    signal: ac.signal,
  };
}
