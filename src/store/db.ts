// SQLite through Node's built-in node:sqlite: no native addon to build, one file per data
// root. WAL with synchronous=NORMAL survives a kill -9 of berthd (commits are in the OS
// before the call returns); power loss may lose the last commits, as with Docker's bolt db.
import { DatabaseSync } from 'node:sqlite';
import { MIGRATIONS } from './migrations.ts';

export class Database {
  readonly db: DatabaseSync;
  private depth = 0;

  constructor(path: string) {
    this.db = new DatabaseSync(path);
    this.db.exec(
      'PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;',
    );
    this.migrate();
  }

  private migrate(): void {
    const row = this.db.prepare('PRAGMA user_version').get() as { user_version: number };
    for (let v = row.user_version; v < MIGRATIONS.length; v++) {
      this.tx(() => {
        this.db.exec(MIGRATIONS[v] as string);
        this.db.exec(`PRAGMA user_version=${v + 1}`);
      });
    }
  }

  // Nested calls join the outer transaction, so a service can compose store writes and
  // the event that announces them into one commit.
  tx<T>(fn: () => T): T {
    if (this.depth > 0) return fn();
    this.db.exec('BEGIN IMMEDIATE');
    this.depth++;
    try {
      const r = fn();
      this.db.exec('COMMIT');
      return r;
    } catch (e) {
      this.db.exec('ROLLBACK');
      throw e;
    } finally {
      this.depth--;
    }
  }

  close(): void {
    this.db.close();
  }
}
