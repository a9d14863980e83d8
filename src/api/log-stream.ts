// Log lines on the wire, for both APIs: framed (the 8-byte stream header) or raw, and
// written with backpressure.
import type { ServerResponse } from 'node:http';
import type { LogLine, LogService, Stream } from '../engine/index.ts';
import { frame, STDERR, STDOUT } from '../util/stream-frame.ts';

// Writes with backpressure: a slow reader slows only its own stream (both APIs' logs).
export function send(res: ServerResponse, data: Buffer | string): Promise<void> {
  if (res.destroyed) return Promise.resolve();
  if (res.write(data)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

// Consecutive lines of one stream go out as one frame: framing costs per batch, not per
// line. The Docker API's logs use it too.
export function encodeLogLines(
  lines: readonly LogLine[],
  timestamps: boolean,
  framed: boolean,
): Buffer {
  const parts: Buffer[] = [];
  let run: Buffer[] = [];
  let runStream: Stream | undefined;
  const flush = () => {
    if (run.length === 0) return;
    const body = Buffer.concat(run);
    parts.push(framed ? frame(runStream === 'stderr' ? STDERR : STDOUT, body) : body);
    run = [];
  };
  for (const l of lines) {
    if (framed && l.stream !== runStream) {
      flush();
      runStream = l.stream;
    }
    if (timestamps) run.push(Buffer.from(`${l.ts} `));
    if (l.textNl) run.push(l.textNl);
    else run.push(l.text, NEWLINE);
  }
  flush();
  return Buffer.concat(parts);
}
const NEWLINE = Buffer.from('\n');

// One container's log onto a response, batch by batch with backpressure, for both APIs.
export async function sendLog(
  res: ServerResponse,
  logs: LogService,
  id: string,
  o: {
    readonly since: string | undefined;
    readonly until: string | undefined;
    readonly tail: number | undefined;
    readonly streams: ReadonlySet<Stream> | undefined;
    // Reading goes on until this resolves (the container stopped), then drains.
    readonly follow: Promise<unknown> | undefined;
    readonly timestamps: boolean;
    readonly framed: boolean;
    readonly signal: AbortSignal;
  },
): Promise<void> {
  const it = logs.read(id, {
    since: o.since,
    until: o.until,
    tail: o.tail,
    streams: o.streams,
    follow: o.follow,
    signal: o.signal,
    needTs: o.timestamps,
  });
  for await (const batch of it) {
    if (o.signal.aborted) break;
    await send(res, encodeLogLines(batch, o.timestamps, o.framed));
  }
}
