// Log reading over the API: one container's log (docker's stream framing, or raw with a
// terminal) and the cross-container journal as NDJSON with a cursor per line.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { ContainerEngine, LogService } from '../engine/index.ts';
import { decodeCursor, type JournalSource, type Stream } from '../engine/index.ts';
import { invalid } from '../util/errors.ts';
import { parseTimeArg } from '../util/time.ts';
import { truthy } from './query.ts';
import { send, sendLog } from './log-stream.ts';

const BoolQ = Type.Optional(Type.String({ maxLength: 5 }));

function timeArg(v: string | undefined, field: string): string | undefined {
  if (v === undefined || v === '' || v === '0') return undefined;
  const t = parseTimeArg(v);
  if (t === undefined)
    throw invalid(field, `"${v}" is not a time (RFC 3339, Unix seconds, or a duration like 10m)`);
  return t;
}

export function registerLogRoutes(
  app: FastifyInstance,
  containers: ContainerEngine,
  logs: LogService,
): void {
  app.get(
    '/v1/containers/:id/logs',
    {
      schema: {
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) }),
        querystring: Type.Object({
          follow: BoolQ,
          stdout: BoolQ,
          stderr: BoolQ,
          timestamps: BoolQ,
          since: Type.Optional(Type.String({ maxLength: 64 })),
          until: Type.Optional(Type.String({ maxLength: 64 })),
          tail: Type.Optional(Type.String({ pattern: '^(all|\\d+)$' })),
        }),
      },
    },
    async (req: FastifyRequest, reply) => {
      const q = req.query as Record<string, string | undefined>;
      const c = containers.resolve((req.params as { id: string }).id);
      const since = timeArg(q['since'], 'since');
      const until = timeArg(q['until'], 'until');
      const streams = new Set<Stream>();
      // Docker's API asks for streams explicitly; none asked means both, as the CLI does.
      if (truthy(q['stdout'])) streams.add('stdout');
      if (truthy(q['stderr'])) streams.add('stderr');
      if (streams.size === 0) {
        streams.add('stdout');
        streams.add('stderr');
      }
      const tail = q['tail'] === undefined || q['tail'] === 'all' ? undefined : Number(q['tail']);
      const follow = truthy(q['follow']);
      const ac = new AbortController();
      const stopped =
        follow && c.state === 'running'
          ? containers.wait(c.id, 'not-running', ac.signal).catch(() => undefined)
          : undefined;
      const framed = !c.config.tty;
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'Content-Type': framed
          ? 'application/vnd.docker.multiplexed-stream'
          : 'application/vnd.docker.raw-stream',
      });
      res.flushHeaders();
      res.on('close', () => ac.abort());
      try {
        await sendLog(res, logs, c.id, {
          since,
          until,
          tail,
          streams,
          follow: follow ? (stopped ?? Promise.resolve()) : undefined,
          timestamps: truthy(q['timestamps']),
          framed,
          signal: ac.signal,
        });
      } finally {
        ac.abort();
        res.end();
      }
    },
  );

  app.get(
    '/v1/journal',
    {
      schema: {
        querystring: Type.Object({
          follow: BoolQ,
          since: Type.Optional(Type.String({ maxLength: 64 })),
          until: Type.Optional(Type.String({ maxLength: 64 })),
          container: Type.Optional(
            Type.Union([
              Type.String({ maxLength: 128 }),
              Type.Array(Type.String({ maxLength: 128 }), { maxItems: 256 }),
            ]),
          ),
          label: Type.Optional(
            Type.Union([
              Type.String({ maxLength: 1024 }),
              Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 64 }),
            ]),
          ),
          stream: Type.Optional(Type.Union([Type.Literal('stdout'), Type.Literal('stderr')])),
          grep: Type.Optional(Type.String({ maxLength: 1024 })),
          after: Type.Optional(Type.String({ maxLength: 512 })),
        }),
      },
    },
    async (req: FastifyRequest, reply) => {
      const q = req.query as Record<string, string | string[] | undefined>;
      const list = (v: string | string[] | undefined) =>
        v === undefined ? [] : Array.isArray(v) ? v : [v];
      const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
      const since = timeArg(one(q['since']), 'since');
      const until = timeArg(one(q['until']), 'until');
      let grep: RegExp | undefined;
      const g = one(q['grep']);
      if (g !== undefined) {
        // The pattern runs on berthd's event loop: refuse the shapes that backtrack
        // exponentially (a quantified group that itself repeats).
        if (g.length > 256 || /\([^)]*[+*}][^)]*\)\s*[+*{]/.test(g)) {
          throw invalid('grep', 'pattern too long or with nested repetition');
        }
        try {
          grep = new RegExp(g);
        } catch (e) {
          throw invalid('grep', (e as Error).message);
        }
      }
      const afterArg = one(q['after']);
      const after = afterArg === undefined ? undefined : decodeCursor(afterArg);
      if (afterArg !== undefined && !after) throw invalid('after', 'not a journal cursor');
      const wanted = list(q['container']);
      const labels = list(q['label']);
      const stream = one(q['stream']) as Stream | undefined;
      const match = (s: JournalSource) =>
        (wanted.length === 0 || wanted.some((w) => s.name === w || s.id.startsWith(w))) &&
        labels.every((l) => {
          const i = l.indexOf('=');
          return i < 0 ? l in s.labels : s.labels[l.slice(0, i)] === l.slice(i + 1);
        });
      const ac = new AbortController();
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
      res.flushHeaders();
      res.on('close', () => ac.abort());
      try {
        const it = logs.journal(match, {
          since,
          until,
          streams: stream ? new Set([stream]) : undefined,
          grep,
          after,
          follow: truthy(one(q['follow'])),
          signal: ac.signal,
        });
        for await (const batch of it) {
          if (ac.signal.aborted) break;
          let out = '';
          for (const e of batch) {
            out +=
              JSON.stringify({
                cursor: e.cursor,
                time: e.line.ts,
                id: e.source.id,
                name: e.source.name,
                image: e.source.image,
                stream: e.line.stream,
                message: e.line.text.toString(),
              }) + '\n';
          }
          await send(res, out);
        }
      } finally {
        ac.abort();
        res.end();
      }
    },
  );
}
