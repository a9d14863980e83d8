// One berthd per data root. SQLite's exclusive lock on a lock database is a POSIX record
// lock: the kernel drops it when the process dies, even by kill -9, so a stale lock never
// blocks a restart.
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import { BerthError } from '../util/errors.ts';

export function lockRoot(root: string): DatabaseSync {
  const db = new DatabaseSync(join(root, 'berthd.lock'));
  try {
    db.exec('PRAGMA busy_timeout=0; PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;');
    db.exec('CREATE TABLE IF NOT EXISTS owner (pid INTEGER)');
  } catch {
    db.close();
    throw new BerthError(
      'DAEMON_ALREADY_RUNNING',
      `Another berthd is already running with ${root}`,
    );
  }
  return db;
}
