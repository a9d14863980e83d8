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

// Rows read from the store per query, and per turn of the event loop: a reader whose
// filter matches nothing still scans, but a slice at a time, between everyone else's work.
const BATCH = 500;
const SLICE = 10 * BATCH;

// parseTimeArg gives RFC 3339 with nine fractional digits, in UTC.
function timeArgNano(v: string | undefined, field: string): bigint | undefined {
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

      let done = false;
      let reading = false;
      let later: NodeJS.Immediate | undefined;
      let deadline: NodeJS.Timeout | undefined;
      const finish = () => {
        if (done) return;
        done = true;
        res.end();
      };
      const wanted = (e: EventRecord) =>
        (sinceNano === undefined || e.timeNano >= sinceNano) &&
        (untilNano === undefined || e.timeNano <= untilNano) &&
        matchEvent(e, filters);
      // Until time passed: the stream is a replay that ends when it has caught up.
      let live = follow && (untilNano === undefined || untilNano > BigInt(Date.now()) * 1_000_000n);

      // Always reads from the store at this reader's own pace: a slow reader only delays
      // itself. A full socket stops the reading until 'drain'; a reader that keeps the
      // socket empty (a filter that matches little) yields after each slice.
      const pump = () => {
        if (reading || done) return;
        reading = true;
        try {
          let scanned = 0;
          for (;;) {
            if (until !== undefined && cursor >= until) return finish();
            const batch = events.after(cursor, BATCH);
            let text = '';
            let past = false;
            for (const e of batch) {
              if (until !== undefined && e.seq > until) {
                past = true;
                break;
              }
              // Seqs have no gaps, so a jump means retention overtook this reader: say so
              // rather than skip silently. The headers are gone; the error is the last line.
              if (cursor > 0 && e.seq !== cursor + 1) {
                text += prunedLine(cursor, e.seq);
                past = true;
                break;
              }
              cursor = e.seq;
              if (wanted(e)) text += eventLine(e);
            }
            const room = text ? res.write(text) : true;
            if (past) return finish();
            if (batch.length < BATCH) {
              if (!live) finish();
              return;
            }
            if (!room) return; // 'drain' calls us again
            scanned += batch.length;
            if (scanned >= SLICE) {
              later ??= setImmediate(() => {
                later = undefined;
                pump();
              });
              return;
            }
          }
        } finally {
          reading = false;
        }
      };
      const off = events.onAppend(() => {
        if (!res.writableNeedDrain) pump();
      });
      // Timers hold at most 2^31 ms: a far until is reached in steps.
      const arm = (end: number) => {
        const ms = end - Date.now();
        if (ms > 0) {
          deadline = setTimeout(() => arm(end), Math.min(ms + 1, 2 ** 31 - 1));
          return;
        }
        live = false;
        if (!res.writableNeedDrain) pump();
      };
      if (live && untilNano !== undefined) arm(Number(untilNano / 1_000_000n));
      res.on('drain', pump);
      res.on('close', () => {
        done = true;
        off();
        if (later) clearImmediate(later);
        clearTimeout(deadline);
      });
      pump();
    },
  );
}
