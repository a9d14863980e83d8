// Streams the event journal to one reader, berth's NDJSON and Docker's /events alike.
// Always reads from the store at this reader's own pace: a slow reader only delays itself.
// A full socket stops the reading until 'drain'; a reader that keeps the socket empty (a
// filter that matches little) yields after each slice, between everyone else's work.
import type { ServerResponse } from 'node:http';
import type { EventBus } from '../engine/index.ts';
import type { EventRecord } from '../types/domain.ts';

// Rows read from the store per query, and per turn of the event loop.
const BATCH = 500;
const SLICE = 10 * BATCH;

export interface JournalStream {
  // The last seq the reader has: it gets what comes after.
  readonly cursor: number;
  // Keep following new events once caught up.
  readonly live: boolean;
  // Stop following at this time (ms), when live.
  readonly liveUntilMs?: number;
  // The last seq to send.
  readonly endSeq?: number;
  // An event at or past the end: the stream ends before it.
  readonly past?: (e: EventRecord) => boolean;
  // Seqs have no gaps, so a jump means retention overtook the reader. With this, the jump
  // ends the stream with the line it returns rather than skip silently.
  readonly gapLine?: (cursor: number, seq: number) => string;
  // The text for one event; '' leaves it out.
  readonly line: (e: EventRecord) => string;
}

export function streamJournal(res: ServerResponse, events: EventBus, o: JournalStream): void {
  let cursor = o.cursor;
  let live = o.live;
  let done = false;
  let reading = false;
  let later: NodeJS.Immediate | undefined;
  let deadline: NodeJS.Timeout | undefined;
  const finish = () => {
    if (done) return;
    done = true;
    res.end();
  };
  const pump = () => {
    if (reading || done) return;
    reading = true;
    try {
      let scanned = 0;
      for (;;) {
        if (o.endSeq !== undefined && cursor >= o.endSeq) return finish();
        const batch = events.after(cursor, BATCH);
        let text = '';
        let past = false;
        for (const e of batch) {
          if ((o.endSeq !== undefined && e.seq > o.endSeq) || o.past?.(e)) {
            past = true;
            break;
          }
          if (o.gapLine && cursor > 0 && e.seq !== cursor + 1) {
            text += o.gapLine(cursor, e.seq);
            past = true;
            break;
          }
          cursor = e.seq;
          text += o.line(e);
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
  // Timers hold at most 2^31 ms: a far end is reached in steps.
  const arm = (end: number) => {
    const ms = end - Date.now();
    if (ms > 0) {
      deadline = setTimeout(() => arm(end), Math.min(ms + 1, 2 ** 31 - 1));
      return;
    }
    live = false;
    if (!res.writableNeedDrain) pump();
  };
  if (live && o.liveUntilMs !== undefined) arm(o.liveUntilMs);
  res.on('drain', pump);
  res.on('close', () => {
    done = true;
    off();
    if (later) clearImmediate(later);
    clearTimeout(deadline);
  });
  pump();
}
