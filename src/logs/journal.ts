// One time-ordered view across containers, with a cursor on every line so a reader can
// resume exactly where it stopped. The order is total: (time, container id, file seq,
// offset), and a cursor is that tuple.
import { setTimeout as sleepFor } from 'node:timers/promises';
import { toLogTime } from '../util/time.ts';
import { readLog, type LogLine, type ReadOptions, type Stream } from './reader.ts';

export interface JournalSource {
  readonly id: string;
  readonly name: string;
  readonly image: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly livePath: string;
}

export interface Cursor {
  readonly ts: string;
  readonly id: string;
  readonly seq: number;
  readonly offset: number;
}

export interface JournalEntry {
  readonly cursor: string;
  readonly source: JournalSource;
  readonly line: LogLine;
}

export interface JournalOptions {
  readonly since?: string | undefined;
  readonly until?: string | undefined;
  readonly streams?: ReadonlySet<Stream> | undefined;
  readonly grep?: RegExp | undefined;
  readonly after?: Cursor | undefined;
  readonly follow?: boolean | undefined;
  readonly signal?: AbortSignal | undefined;
  // Lines newer than now minus this are held back while following, so that a line a
  // monitor writes a moment late still comes out in order (and cursors stay exact).
  readonly settleMs?: number | undefined;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(`${c.ts}|${c.id}|${c.seq}|${c.offset}`).toString('base64url');
}

export function decodeCursor(s: string): Cursor | undefined {
  const parts = Buffer.from(s, 'base64url').toString().split('|');
  if (parts.length !== 4) return undefined;
  const [ts, id, seq, offset] = parts as [string, string, string, string];
  if (
    !/^\d{4}-\d\d-\d\dT/.test(ts) ||
    !/^[0-9a-f]{64}$/.test(id) ||
    !/^\d+$/.test(seq) ||
    !/^\d+$/.test(offset)
  )
    return undefined;
  return { ts, id, seq: Number(seq), offset: Number(offset) };
}

function cmp(a: Cursor, b: Cursor): number {
  if (a.ts !== b.ts) return a.ts < b.ts ? -1 : 1;
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  if (a.seq !== b.seq) return a.seq - b.seq;
  return a.offset - b.offset;
}

const keyOf = (s: JournalSource, l: LogLine): Cursor => ({
  ts: l.ts,
  id: s.id,
  seq: l.seq,
  offset: l.offset,
});

interface Head {
  readonly source: JournalSource;
  readonly it: AsyncGenerator<LogLine[]>;
  batch: LogLine[];
  i: number;
  done: boolean;
}

async function fill(h: Head): Promise<void> {
  while (!h.done && h.i >= h.batch.length) {
    const r = await h.it.next();
    if (r.done) h.done = true;
    else {
      h.batch = r.value;
      h.i = 0;
    }
  }
}

// Merges sources from their positions up to `until`; returns each source's last position.
async function* mergeOnce(
  sources: readonly JournalSource[],
  o: JournalOptions,
  positions: Map<string, { seq: number; offset: number }>,
  until: string | undefined,
): AsyncGenerator<JournalEntry[]> {
  const heads: Head[] = sources.map((source) => {
    const pos = positions.get(source.id);
    const after =
      pos ??
      (o.after && o.after.id === source.id
        ? { seq: o.after.seq, offset: o.after.offset }
        : undefined);
    const ro: ReadOptions = { since: o.since, until, streams: o.streams, after, needTs: true };
    return { source, it: readLog(source.livePath, ro), batch: [], i: 0, done: false };
  });
  try {
    yield* mergeHeads(heads, o, positions);
  } finally {
    // Closes the file handles of readers a client abandoned mid-way.
    await Promise.all(heads.map((h) => h.it.return(undefined)));
  }
}

async function* mergeHeads(
  heads: Head[],
  o: JournalOptions,
  positions: Map<string, { seq: number; offset: number }>,
): AsyncGenerator<JournalEntry[]> {
  await Promise.all(heads.map(fill));
  let out: JournalEntry[] = [];
  for (;;) {
    let best: Head | undefined;
    let bestKey: Cursor | undefined;
    for (const h of heads) {
      if (h.done) continue;
      const k = keyOf(h.source, h.batch[h.i] as LogLine);
      if (!bestKey || cmp(k, bestKey) < 0) {
        best = h;
        bestKey = k;
      }
    }
    if (!best || !bestKey) break;
    const line = best.batch[best.i++] as LogLine;
    positions.set(best.source.id, { seq: line.seq, offset: line.offset });
    const skip =
      (o.after && best.source.id !== o.after.id && cmp(bestKey, o.after) <= 0) ||
      (o.grep && !o.grep.test(line.text.toString()));
    if (!skip) out.push({ cursor: encodeCursor(bestKey), source: best.source, line });
    if (best.i >= best.batch.length) await fill(best);
    if (out.length >= 512) {
      yield out;
      out = [];
    }
    if (o.signal?.aborted) return;
  }
  if (out.length) yield out;
}

export async function* readJournal(
  listSources: () => readonly JournalSource[],
  o: JournalOptions,
): AsyncGenerator<JournalEntry[]> {
  const positions = new Map<string, { seq: number; offset: number }>();
  if (!o.follow) {
    yield* mergeOnce(listSources(), o, positions, o.until);
    return;
  }
  const settle = o.settleMs ?? 300;
  for (;;) {
    if (o.signal?.aborted) return;
    const watermark = toLogTime(Date.now() - settle);
    const until = o.until !== undefined && o.until < watermark ? o.until : watermark;
    // Each source resumes after its own last position, so nothing repeats; a source seen
    // for the first time (a new container) is read from `since`.
    yield* mergeOnce(listSources(), o, positions, until);
    if (o.until !== undefined && until === o.until) return;
    // Removes its abort listener when it resolves: no build-up over a long follow.
    await sleepFor(250, o.signal === undefined ? {} : { signal: o.signal }).catch(() => undefined);
  }
}
