// A container's log files, as berth-monitor names them: the live file, and rotated files
// `<live>.<seq>` (or `.<seq>.gz` once compressed) whose sequence only grows. Nothing is
// ever renamed twice, so a reader or the compressor never sees a file change name.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export interface LogFile {
  readonly path: string;
  readonly seq: number;
  readonly gz: boolean;
  readonly live: boolean;
}

export const LIVE_NAME = 'container.log';

export function logDir(root: string, id: string): string {
  return join(root, id);
}

// Oldest first, the live file last. The live file's seq is the one it will get when it
// rotates, so a position (seq, offset) stays valid across the rotation.
export function listLogFiles(livePath: string): LogFile[] {
  const dir = dirname(livePath);
  const base = basename(livePath);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const bySeq = new Map<number, LogFile>();
  const re = new RegExp(`^${base.replace(/\./g, '\\.')}\\.(\\d+)(\\.gz)?$`);
  for (const n of names) {
    const m = re.exec(n);
    if (!m) continue;
    const seq = Number(m[1]);
    const gz = m[2] !== undefined;
    // While compressing, both forms exist for a moment: the plain one is complete.
    if (bySeq.has(seq) && gz) continue;
    bySeq.set(seq, { path: join(dir, n), seq, gz, live: false });
  }
  const rotated = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  const next = (rotated[rotated.length - 1]?.seq ?? 0) + 1;
  const files = rotated;
  // A directory listing can miss an entry renamed while it is read; ask by name.
  if (names.includes(base) || existsSync(livePath))
    files.push({ path: livePath, seq: next, gz: false, live: true });
  return files;
}

export function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
