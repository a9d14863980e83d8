import type { Database } from './db.ts';
import type { UsernsMapping } from '../types/domain.ts';

interface Row {
  container_id: string;
  uid_base: number;
  gid_base: number;
  size: number;
}

export interface UsernsRange extends UsernsMapping {
  readonly containerId: string;
}

function fromRow(r: Row): UsernsRange {
  return { containerId: r.container_id, uidBase: r.uid_base, gidBase: r.gid_base, size: r.size };
}

// Subordinate id ranges handed to containers (--userns=auto). A range goes with its
// container's row (ON DELETE CASCADE); UNIQUE bases are the last word on two containers
// getting the same range, whatever the allocator (engine/userns.ts) checked.
export class UsernsRepo {
  private readonly db: Database;
  constructor(db: Database) {
    this.db = db;
  }

  insert(r: UsernsRange): void {
    this.db.db
      .prepare(
        'INSERT INTO userns_ranges (container_id, uid_base, gid_base, size) VALUES (?, ?, ?, ?)',
      )
      .run(r.containerId, r.uidBase, r.gidBase, r.size);
  }

  byContainer(containerId: string): UsernsRange | undefined {
    const r = this.db.db
      .prepare('SELECT * FROM userns_ranges WHERE container_id = ?')
      .get(containerId) as Row | undefined;
    return r && fromRow(r);
  }

  list(): UsernsRange[] {
    const rows = this.db.db
      .prepare('SELECT * FROM userns_ranges ORDER BY uid_base')
      .all() as unknown as Row[];
    return rows.map(fromRow);
  }

  delete(containerId: string): number {
    return Number(
      this.db.db.prepare('DELETE FROM userns_ranges WHERE container_id = ?').run(containerId)
        .changes,
    );
  }
}
