import type { Database } from './db.ts';
import type { EventRecord, NewEvent } from '../types/domain.ts';

interface Row {
  seq: number | bigint;
  time: string;
  time_nano: number | bigint;
  type: string;
  action: string;
  actor_id: string;
  attributes: string;
}

function fromRow(r: Row): EventRecord {
  return {
    seq: Number(r.seq),
    time: r.time,
    timeNano: BigInt(r.time_nano),
    type: r.type as EventRecord['type'],
    action: r.action,
    actorId: r.actor_id,
    attributes: JSON.parse(r.attributes) as Record<string, string>,
  };
}

// Events are appended inside the caller's transaction: the state change and its event
// commit together or not at all, and AUTOINCREMENT rolls back with them, so sequence
// numbers have no gaps.
export class EventRepo {
  private readonly db: Database;
  constructor(db: Database) {
    this.db = db;
  }

  // at: a Date, or an RFC 3339 time with up to nine fractional digits (the monitor's),
  // kept to the nanosecond.
  append(e: NewEvent, at: Date | string = new Date()): EventRecord {
    const { time, timeNano } = eventTime(at);
    const stmt = this.db.db.prepare(
      `INSERT INTO events (time, time_nano, type, action, actor_id, attributes)
       VALUES (?, ?, ?, ?, ?, ?) RETURNING *`,
    );
    stmt.setReadBigInts(true);
    const r = stmt.get(
      time,
      timeNano,
      e.type,
      e.action,
      e.actorId,
      JSON.stringify(e.attributes),
    ) as unknown as Row;
    return fromRow(r);
  }

  after(seq: number, limit: number): EventRecord[] {
    const stmt = this.db.db.prepare('SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?');
    stmt.setReadBigInts(true);
    return (stmt.all(seq, limit) as unknown as Row[]).map(fromRow);
  }

  // Walks the seq primary key from afterSeq; the time bounds only drop rows on the way, so
  // the cost is the seq range scanned, whatever the times (replayed events carry the real,
  // earlier time at which they happened, so time does not grow with seq).
  query(q: EventQuery): EventRecord[] {
    const stmt = this.db.db.prepare(
      `SELECT * FROM events
       WHERE seq > ? AND seq <= ? AND time_nano >= ? AND time_nano <= ?
       ORDER BY seq LIMIT ?`,
    );
    stmt.setReadBigInts(true);
    const rows = stmt.all(
      q.afterSeq ?? 0,
      q.untilSeq ?? Number.MAX_SAFE_INTEGER,
      q.sinceNano ?? MIN_NANO,
      q.untilNano ?? MAX_NANO,
      q.limit,
    ) as unknown as Row[];
    return rows.map(fromRow);
  }

  // The first event at or after a time, through the time index: a `since 10m` reader then
  // starts there instead of scanning the journal from its oldest event. Times do not grow
  // with seq (replayed events keep their real times), but every event before the
  // smallest such seq is older, so starting there skips nothing.
  firstSeqSince(nano: bigint): number | undefined {
    const r = this.db.db
      .prepare('SELECT min(seq) AS seq FROM events WHERE time_nano >= ?')
      .get(nano) as { seq: number | null };
    return r.seq ?? undefined;
  }

  // The last sequence number ever given out, pruned or not: AUTOINCREMENT remembers it.
  lastSeq(): number {
    const r = this.db.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'events'").get() as
      { seq: number } | undefined;
    return r?.seq ?? 0;
  }

  // The oldest retained event; with nothing retained, the next one to come.
  oldestSeq(): number {
    const r = this.db.db.prepare('SELECT min(seq) AS seq FROM events').get() as {
      seq: number | null;
    };
    return r.seq ?? this.lastSeq() + 1;
  }

  // Deletes a prefix of the journal, so what is retained stays one gapless range of seqs:
  // everything beyond the newest maxCount, and the run of oldest events older than
  // maxAgeMs. The newest event always stays, so a reader can always learn where the
  // journal stands. At most `batch` rows go per call, to bound the time the store is held.
  prune(maxCount: number, maxAgeMs: number, opts: { now?: number; batch?: number } = {}): number {
    return this.db.tx(() => {
      const last = this.lastSeq();
      const oldest = this.oldestSeq();
      if (last === 0 || oldest >= last) return 0;
      const byCount = last - maxCount + 1;
      const cutoff = BigInt(Math.floor((opts.now ?? Date.now()) - maxAgeMs)) * 1_000_000n;
      // Primary-key order from the oldest: stops at the first young event, so the cost is
      // what gets deleted.
      const young = this.db.db
        .prepare('SELECT seq FROM events WHERE time_nano >= ? ORDER BY seq LIMIT 1')
        .get(cutoff) as { seq: number } | undefined;
      const byAge = young?.seq ?? last;
      const keepFrom = Math.min(last, Math.max(byCount, byAge), oldest + (opts.batch ?? 1e9));
      if (keepFrom <= oldest) return 0;
      const r = this.db.db.prepare('DELETE FROM events WHERE seq < ?').run(keepFrom);
      return Number(r.changes);
    });
  }
}

export interface EventQuery {
  readonly afterSeq?: number;
  readonly untilSeq?: number;
  readonly sinceNano?: bigint;
  readonly untilNano?: bigint;
  readonly limit: number;
}

const MIN_NANO = -(2n ** 63n);
const MAX_NANO = 2n ** 63n - 1n;

function eventTime(at: Date | string): { time: string; timeNano: bigint } {
  if (typeof at !== 'string')
    return { time: at.toISOString(), timeNano: BigInt(at.getTime()) * 1_000_000n };
  const ms = Date.parse(at);
  if (Number.isNaN(ms)) return eventTime(new Date());
  const frac = /\.(\d{1,9})(?:Z|[+-]\d\d:\d\d)$/.exec(at)?.[1] ?? '';
  const sec = BigInt(Math.floor(ms / 1000));
  return { time: at, timeNano: sec * 1_000_000_000n + BigInt(frac.padEnd(9, '0') || '0') };
}
