// Docker's progress streams (pull, push, load, import): one JSON object per line, sent as
// application/json, which is what makes the docker CLI read it as messages rather than copy
// it. Once the stream has started, a failure is its last message ({error, errorDetail}),
// as Docker's are; before, it is an ordinary error response.
import type { FastifyReply } from 'fastify';
import type { ProgressMessage } from '../../engine/index.ts';
import { lineStream, type LineStream } from '../line-stream.ts';

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

export interface MessageStream extends LineStream<DockerMessage> {
  // The engine's progress, in Docker's form.
  progress(m: ProgressMessage): void;
}

export function fromProgress(m: ProgressMessage): DockerMessage {
  const { errorDetail, ...rest } = m;
  return errorDetail ? { ...rest, errorDetail: { message: errorDetail.message } } : rest;
}

// Docker's framing: application/json, CRLF after each message.
export function messageStream(reply: FastifyReply, o: { lazy?: boolean } = {}): MessageStream {
  const s = lineStream<DockerMessage>(reply, {
    contentType: 'application/json',
    eol: '\r\n',
    errorMessage: (e) => ({ errorDetail: { message: e.message }, error: e.message }),
    ...o,
  });
  return { ...s, progress: (m) => s.write(fromProgress(m)) };
}
