import type { Database } from './db.ts';
import type {
  ContainerConfig,
  ContainerRecord,
  ContainerState,
  ContainerUpdate,
  HealthState,
} from '../types/domain.ts';

interface Row {
  id: string;
  name: string;
  config: string;
  created_at: string;
  state: string;
  pid: number;
  monitor_pid: number;
  exit_code: number;
  signal: number;
  oom_killed: number;
  started_at: string;
  finished_at: string;
  restart_count: number;
  error: string;
  stopped_by_user: number;
  events_offset: number;
  log_dropped_bytes: number;
  oom_kills: number;
  next_restart_at: string;
  health: string;
}

const COLUMNS: Record<keyof ContainerUpdate, keyof Row> = {
  name: 'name',
  state: 'state',
  pid: 'pid',
  monitorPid: 'monitor_pid',
  exitCode: 'exit_code',
  signal: 'signal',
  oomKilled: 'oom_killed',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
  restartCount: 'restart_count',
  error: 'error',
  stoppedByUser: 'stopped_by_user',
  eventsOffset: 'events_offset',
  logDroppedBytes: 'log_dropped_bytes',
  oomKills: 'oom_kills',
  nextRestartAt: 'next_restart_at',
  health: 'health',
};

function fromRow(r: Row): ContainerRecord {
  return {
    id: r.id,
    name: r.name,
    config: JSON.parse(r.config) as ContainerConfig,
    createdAt: r.created_at,
    state: r.state as ContainerState,
    pid: r.pid,
    monitorPid: r.monitor_pid,
    exitCode: r.exit_code,
    signal: r.signal,
    oomKilled: r.oom_killed !== 0,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    restartCount: r.restart_count,
    error: r.error,
    stoppedByUser: r.stopped_by_user !== 0,
    eventsOffset: r.events_offset,
    logDroppedBytes: r.log_dropped_bytes,
    oomKills: r.oom_kills,
    nextRestartAt: r.next_restart_at,
    health: r.health ? (JSON.parse(r.health) as HealthState) : undefined,
  };
}

export class ContainerRepo {
  private readonly db: Database;
  constructor(db: Database) {
    this.db = db;
  }

  insert(c: ContainerRecord): void {
    this.db.db
      .prepare(
        `INSERT INTO containers (id, name, config, created_at, state) VALUES (?, ?, ?, ?, ?)`,
      )
      .run(c.id, c.name, JSON.stringify(c.config), c.createdAt, c.state);
  }

  get(id: string): ContainerRecord | undefined {
    const r = this.db.db.prepare('SELECT * FROM containers WHERE id = ?').get(id) as
      Row | undefined;
    return r && fromRow(r);
  }

  byName(name: string): ContainerRecord | undefined {
    const r = this.db.db.prepare('SELECT * FROM containers WHERE name = ?').get(name) as
      Row | undefined;
    return r && fromRow(r);
  }

  byIdPrefix(prefix: string): ContainerRecord[] {
    const rows = this.db.db
      .prepare(`SELECT * FROM containers WHERE id >= ? AND id < ? LIMIT 2`)
      .all(prefix, `${prefix}g`) as unknown as Row[];
    return rows.map(fromRow);
  }

  list(): ContainerRecord[] {
    const rows = this.db.db
      .prepare('SELECT * FROM containers ORDER BY created_at DESC, id')
      .all() as unknown as Row[];
    return rows.map(fromRow);
  }

  update(id: string, u: ContainerUpdate): ContainerRecord {
    const sets: string[] = [];
    const vals: (string | number)[] = [];
    for (const [k, v] of Object.entries(u) as [keyof ContainerUpdate, unknown][]) {
      if (v === undefined) continue; // null clears health
      sets.push(`${COLUMNS[k]} = ?`);
      if (k === 'health') vals.push(v ? JSON.stringify(v) : '');
      else vals.push(typeof v === 'boolean' ? (v ? 1 : 0) : (v as string | number));
    }
    if (sets.length > 0) {
      this.db.db.prepare(`UPDATE containers SET ${sets.join(', ')} WHERE id = ?`).run(...vals, id);
    }
    const c = this.get(id);
    if (!c) throw new Error(`container ${id} vanished from the store`);
    return c;
  }

  updateConfig(id: string, config: ContainerConfig): ContainerRecord {
    this.db.db
      .prepare('UPDATE containers SET config = ? WHERE id = ?')
      .run(JSON.stringify(config), id);
    const c = this.get(id);
    if (!c) throw new Error(`container ${id} vanished from the store`);
    return c;
  }

  delete(id: string): void {
    this.db.db.prepare('DELETE FROM containers WHERE id = ?').run(id);
  }
}
