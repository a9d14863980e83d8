// The journal's range queries and retention: a gapless range of seqs that retention only
// ever shortens from the old end.
import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/store/index.ts';

let dir: string;
let store: Store;
const T0 = Date.parse('2024-01-01T00:00:00Z');
const MIN = 60_000;

// n events one minute apart from `from`.
function append(n: number, from: number, action = 'create'): void {
  store.tx(() => {
    for (let i = 0; i < n; i++)
      store.events.append(
        { type: 'container', action, actorId: `c${i}`, attributes: { i: String(i) } },
        new Date(from + i * MIN),
      );
  });
}
const seqs = () => store.events.after(0, 1e6).map((e) => e.seq);
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-events-'));
  store = new Store(join(dir, 'berth.db'));
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('event journal', () => {
  it("keeps the monitor's nanoseconds", () => {
    const e = store.tx(() =>
      store.events.append(
        { type: 'container', action: 'die', actorId: 'c', attributes: {} },
        '2026-11-30T02:00:00.123456789Z',
      ),
    );
    assert.equal(e.timeNano, 1796004000123456789n);
    assert.equal(e.time, '2026-11-30T02:00:00.123456789Z');
  });

  it('finds the first event at or after a time, also when late events carry old times', () => {
    append(10, T0); // seqs 1..10 at T0 .. T0+9m
    append(2, T0 - 60 * MIN); // 11, 12: replayed late, an hour older
    const nano = (ms: number) => BigInt(ms) * 1_000_000n;
    assert.equal(store.events.firstSeqSince(nano(T0 + 5 * MIN)), 6);
    assert.equal(store.events.firstSeqSince(nano(T0 - 60 * MIN)), 1);
    assert.equal(store.events.firstSeqSince(nano(T0 + 60 * MIN)), undefined);
  });

  it('is empty at first', () => {
    assert.equal(store.events.lastSeq(), 0);
    assert.equal(store.events.oldestSeq(), 1);
    assert.equal(store.events.prune(1, 0), 0);
  });

  it('queries by seq range and time range, in seq order, with a limit', () => {
    append(10, T0);
    const q = (o: Parameters<typeof store.events.query>[0]) =>
      store.events.query(o).map((e) => e.seq);
    assert.deepEqual(q({ limit: 100 }), range(1, 10));
    assert.deepEqual(q({ afterSeq: 3, untilSeq: 6, limit: 100 }), [4, 5, 6]);
    assert.deepEqual(q({ afterSeq: 3, limit: 2 }), [4, 5]);
    const nano = (ms: number) => BigInt(ms) * 1_000_000n;
    assert.deepEqual(
      q({ sinceNano: nano(T0 + 2 * MIN), untilNano: nano(T0 + 4 * MIN), limit: 100 }),
      [3, 4, 5],
    );
    assert.deepEqual(q({ afterSeq: 3, sinceNano: nano(T0 + 2 * MIN), limit: 2 }), [4, 5]);
  });

  it('prunes by count from the old end; later seqs stay gapless', () => {
    append(10, T0);
    assert.equal(store.events.prune(4, 1e12, { now: T0 }), 6);
    assert.deepEqual(seqs(), range(7, 10));
    assert.equal(store.events.oldestSeq(), 7);
    assert.equal(store.events.lastSeq(), 10);
    append(3, T0 + 10 * MIN);
    assert.deepEqual(seqs(), range(7, 13));
    assert.equal(store.events.prune(4, 1e12, { now: T0 }), 3);
    assert.deepEqual(seqs(), range(10, 13));
  });

  it('prunes by age the run of old events at the old end', () => {
    append(10, T0);
    // At T0 + 12 min with 5 min of age: events 1..7 (T0..T0+6) are older.
    assert.equal(store.events.prune(1000, 5 * MIN, { now: T0 + 12 * MIN }), 7);
    assert.deepEqual(seqs(), range(8, 10));
  });

  it('stops at the first young event: an old time replayed later waits its turn', () => {
    append(3, T0 + 10 * MIN);
    // Happened while berthd was down, recorded after: a time older than its neighbours.
    append(1, T0, 'die');
    assert.equal(store.events.prune(1000, 5 * MIN, { now: T0 + 12 * MIN }), 0);
    assert.deepEqual(seqs(), range(1, 4));
  });

  it('always keeps the newest event, so where the journal stands is never lost', () => {
    append(5, T0);
    assert.equal(store.events.prune(1, 0, { now: T0 + 1e9 }), 4);
    assert.deepEqual(seqs(), [5]);
    assert.equal(store.events.prune(1, 0, { now: T0 + 1e9 }), 0);
  });

  it('deletes at most a batch per call', () => {
    append(25, T0);
    const done: number[] = [];
    for (let n = -1; n !== 0;) {
      n = store.events.prune(5, 1e12, { now: T0, batch: 7 });
      done.push(n);
    }
    assert.deepEqual(done, [7, 7, 6, 0]);
    assert.deepEqual(seqs(), range(21, 25));
  });
});
