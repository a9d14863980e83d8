// The event journal over the API: NDJSON, one event a line, in sequence order. A reader
// names where it stands (`since`, the last seq it has) and gets everything after it, so a
// controller that reconnects after a berthd restart misses nothing and sees nothing twice.
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { EventBus } from '../engine/index.ts';
import { matchEvent, parseEventFiltersJson } from '../engine/event-filters.ts';
import type { EventRecord } from '../types/domain.ts';
import { BerthError, invalid } from '../util/errors.ts';
import { parseTimeArg } from '../util/time.ts';
import { truthy } from './query.ts';
import { streamJournal } from './journal-stream.ts';

// A time argument (RFC 3339, Unix seconds with a fraction as docker's CLI sends, or a
// duration back from now) in ns. parseTimeArg gives RFC 3339 with nine fractional digits.
export function timeArgNano(v: string | undefined, field: string): bigint | undefined {
  if (v === undefined || v === '') return undefined;
  const t = parseTimeArg(v);
  const m = t === undefined ? null : /^(.*\.\d{3})(\d{6})Z$/.exec(t);
  const ms = m ? Date.parse(`${m[1]}Z`) : NaN;
  if (!m || Number.isNaN(ms))
    throw invalid(field, `"${v}" is not a time (RFC 3339, Unix seconds, or a duration like 10m)`);
  return BigInt(ms) * 1_000_000n + BigInt(m[2] ?? '0');
}

export function eventLine(e: EventRecord): string {
  return JSON.stringify({ ...e, timeNano: e.timeNano.toString() }) + '\n';
}

function prunedMessage(since: number, oldest: number): string {
  return `Pruned since: events after seq ${since} are no longer retained; the oldest retained is seq ${oldest}`;
}

// The one line of a stream that is not an event: `{"error": {code, message}}`.
function prunedLine(since: number, oldest: number): string {
  return (
    JSON.stringify({ error: { code: 'EVENTS_PRUNED', message: prunedMessage(since, oldest) } }) +
    '\n'
  );
}

export function registerEventRoutes(app: FastifyInstance, events: EventBus): void {
  app.get(
    '/v1/events',
    {
      schema: {
        querystring: Type.Object({
          since: Type.Optional(Type.Integer({ minimum: 0 })),
          until: Type.Optional(Type.Integer({ minimum: 0 })),
          sinceTime: Type.Optional(Type.String({ maxLength: 64 })),
          untilTime: Type.Optional(Type.String({ maxLength: 64 })),
          filters: Type.Optional(Type.String({ maxLength: 65536 })),
          follow: Type.Optional(Type.String({ maxLength: 5 })),
        }),
      },
    },
    async (req, reply) => {
      const q = req.query as {
        since?: number;
        until?: number;
        sinceTime?: string;
        untilTime?: string;
        filters?: string;
        follow?: string;
      };
      const filters = parseEventFiltersJson(q.filters);
      const sinceNano = timeArgNano(q.sinceTime, 'sinceTime');
      const untilNano = timeArgNano(q.untilTime, 'untilTime');
      const follow = truthy(q.follow);
      const until = q.until;
      let cursor = q.since ?? 0;
      if (sinceNano !== undefined) {
        // Nothing at or after that time yet: start from the newest, for what comes.
        const first = events.firstSeqSince(sinceNano);
        cursor = Math.max(cursor, first !== undefined ? first - 1 : events.lastSeq());
      }
      // Retention deletes a prefix and always keeps the newest event, so the first event
      // after 0 is the oldest retained one, and an empty journal has never had any.
      const oldest = events.after(0, 1)[0]?.seq;
      if (cursor > 0 && oldest !== undefined && cursor < oldest - 1) {
        throw new BerthError('EVENTS_PRUNED', prunedMessage(cursor, oldest), {
          field: 'since',
          oldestSeq: oldest,
        });
      }

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
      res.flushHeaders();

      const wanted = (e: EventRecord) =>
        (sinceNano === undefined || e.timeNano >= sinceNano) &&
        (untilNano === undefined || e.timeNano <= untilNano) &&
        matchEvent(e, filters);
      // Until time passed: the stream is a replay that ends when it has caught up.
      const live =
        follow && (untilNano === undefined || untilNano > BigInt(Date.now()) * 1_000_000n);
      streamJournal(res, events, {
        cursor,
        live,
        ...(untilNano !== undefined ? { liveUntilMs: Number(untilNano / 1_000_000n) } : {}),
        ...(until !== undefined ? { endSeq: until } : {}),
        gapLine: prunedLine,
        line: (e) => (wanted(e) ? eventLine(e) : ''),
      });
    },
  );
}
