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

  append(e: NewEvent, at: Date = new Date()): EventRecord {
    const timeNano = BigInt(at.getTime()) * 1_000_000n;
    const stmt = this.db.db.prepare(
      `INSERT INTO events (time, time_nano, type, action, actor_id, attributes)
       VALUES (?, ?, ?, ?, ?, ?) RETURNING *`,
    );
    stmt.setReadBigInts(true);
    const r = stmt.get(
      at.toISOString(),
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
}
