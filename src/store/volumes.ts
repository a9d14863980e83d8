import type { Database } from './db.ts';
import type { VolumeRecord } from '../types/volume.ts';

interface Row {
  name: string;
  created_at: string;
  size_bytes: number;
  labels: string;
}

function fromRow(r: Row): VolumeRecord {
  return {
    name: r.name,
    createdAt: r.created_at,
    sizeBytes: r.size_bytes,
    labels: JSON.parse(r.labels) as Record<string, string>,
  };
}

export class VolumeRepo {
  private readonly db: Database;
  constructor(db: Database) {
    this.db = db;
  }

  insert(v: VolumeRecord): void {
    this.db.db
      .prepare('INSERT INTO volumes (name, created_at, size_bytes, labels) VALUES (?, ?, ?, ?)')
      .run(v.name, v.createdAt, v.sizeBytes, JSON.stringify(v.labels));
  }

  get(name: string): VolumeRecord | undefined {
    const r = this.db.db.prepare('SELECT * FROM volumes WHERE name = ?').get(name) as
      Row | undefined;
    return r && fromRow(r);
  }

  list(): VolumeRecord[] {
    return (
      this.db.db.prepare('SELECT * FROM volumes ORDER BY name').all() as unknown as Row[]
    ).map(fromRow);
  }

  delete(name: string): boolean {
    return this.db.db.prepare('DELETE FROM volumes WHERE name = ?').run(name).changes > 0;
  }
}
