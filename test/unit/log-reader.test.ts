// The log reader and journal on fixture files written the way berth-monitor writes them.
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, describe, it } from 'node:test';
import { listLogFiles } from '../../src/logs/files.ts';
import {
  decodeCursor,
  encodeCursor,
  readJournal,
  type JournalSource,
} from '../../src/logs/journal.ts';
import { readLog, type LogLine, type ReadOptions } from '../../src/logs/reader.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function dir(): string {
  const d = mkdtempSync(join(tmpdir(), 'berth-logs-'));
  dirs.push(d);
  return d;
}

// Times a millisecond apart, from a fixed base, in the monitor's nine-digit form.
const BASE = Date.parse('2026-01-02T03:04:05Z');
const ts = (i: number) => new Date(BASE + i).toISOString().replace('Z', '000000Z');
const rec = (i: number, text: string, stream = 'stdout', tag = 'F') =>
  `${ts(i)} ${stream} ${tag} ${text}\n`;

async function lines(path: string, o: ReadOptions = {}): Promise<LogLine[]> {
  const out: LogLine[] = [];
  for await (const b of readLog(path, o)) out.push(...b);
  return out;
}
const texts = (ls: LogLine[]) => ls.map((l) => l.text.toString());

describe('readLog', () => {
  it('reads rotated files in sequence order, then the live file, and joins partial records', async () => {
    const d = dir();
    const live = join(d, 'container.log');
    writeFileSync(`${live}.2`, rec(3, 'three') + rec(4, 'fo', 'stdout', 'P'));
    writeFileSync(`${live}.1`, rec(1, 'one') + rec(2, 'two'));
    writeFileSync(
      live,
      rec(5, 'ur') + rec(6, 'five', 'stderr') + 'garbage without structure\n' + rec(7, 'six'),
    );
    assert.deepEqual(
      listLogFiles(live).map((f) => [f.seq, f.live]),
      [
        [1, false],
        [2, false],
        [3, true],
      ],
    );
    const all = await lines(live);
    assert.deepEqual(texts(all), ['one', 'two', 'three', 'four', 'five', 'six']);
    assert.equal(all[3]?.stream, 'stdout');
    assert.equal(all[4]?.stream, 'stderr');
    assert.deepEqual(texts(await lines(live, { streams: new Set(['stderr']) })), ['five']);
  });

  it('reads compressed rotated files, and prefers the plain file while both exist', async () => {
    const d = dir();
    const live = join(d, 'container.log');
    writeFileSync(`${live}.1.gz`, gzipSync(rec(1, 'zipped')));
    writeFileSync(`${live}.2`, rec(2, 'plain'));
    writeFileSync(`${live}.2.gz`, gzipSync(rec(2, 'plain-but-zipped')));
    writeFileSync(live, rec(3, 'live'));
    assert.deepEqual(texts(await lines(live)), ['zipped', 'plain', 'live']);
  });

  it('--tail counts lines of both streams backwards across files, compressed ones too', async () => {
    const d = dir();
    const live = join(d, 'container.log');
    let s1 = '';
    for (let i = 0; i < 100; i++) s1 += rec(i, `l${i}`, i % 2 ? 'stderr' : 'stdout');
    writeFileSync(`${live}.1.gz`, gzipSync(s1));
    let s2 = '';
    for (let i = 100; i < 150; i++) s2 += rec(i, `l${i}`);
    writeFileSync(live, s2);
    assert.deepEqual(texts(await lines(live, { tail: 3 })), ['l147', 'l148', 'l149']);
    const t = texts(await lines(live, { tail: 60 }));
    assert.equal(t.length, 60);
    assert.equal(t[0], 'l90');
    assert.deepEqual(texts(await lines(live, { tail: 2, streams: new Set(['stderr']) })), [
      'l97',
      'l99',
    ]);
    assert.equal((await lines(live, { tail: 1000 })).length, 150);
    assert.equal((await lines(live, { tail: 0 })).length, 0);
  });

  it('--since seeks by binary search in a large file and --until stops', async () => {
    const d = dir();
    const live = join(d, 'container.log');
    const parts: string[] = [];
    for (let i = 0; i < 60000; i++) parts.push(rec(i, `n${i}`));
    writeFileSync(live, parts.join(''));
    const got = await lines(live, { since: ts(41234) });
    assert.equal(got.length, 60000 - 41234);
    assert.equal(got[0]?.text.toString(), 'n41234');
    const until = await lines(live, { since: ts(100), until: ts(199) });
    assert.deepEqual([until[0]?.text.toString(), until.length], ['n100', 100]);
  });

  it('resumes strictly after a position', async () => {
    const d = dir();
    const live = join(d, 'container.log');
    writeFileSync(`${live}.1`, rec(1, 'a') + rec(2, 'b'));
    writeFileSync(live, rec(3, 'c') + rec(4, 'd'));
    const all = await lines(live, { needTs: true });
    const b = all[1] as LogLine;
    assert.deepEqual(texts(await lines(live, { after: { seq: b.seq, offset: b.offset } })), [
      'c',
      'd',
    ]);
  });

  it('follows across several rotations with no gap and no duplicate, then stops', async () => {
    const d = dir();
    const live = join(d, 'container.log');
    writeFileSync(live, '');
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    const seen: string[] = [];
    const reading = (async () => {
      for await (const b of readLog(live, { follow: stopped })) seen.push(...texts(b));
    })();
    // Write like the monitor: append, and rotate by renaming to the next sequence number,
    // several times between two looks of the reader.
    let n = 0;
    for (let seq = 1; seq <= 12; seq++) {
      for (let k = 0; k < 50; k++) appendFileSync(live, rec(n, `x${n++}`));
      renameSync(live, `${live}.${seq}`);
      writeFileSync(live, '');
      if (seq % 4 === 0) await new Promise((r) => setTimeout(r, 30));
    }
    for (let k = 0; k < 10; k++) appendFileSync(live, rec(n, `x${n++}`));
    await new Promise((r) => setTimeout(r, 400));
    stop();
    await reading;
    assert.deepEqual(
      seen,
      Array.from({ length: n }, (_, i) => `x${i}`),
    );
  });
});

describe('readJournal', () => {
  const src = (
    root: string,
    id: string,
    name: string,
    labels: Record<string, string> = {},
  ): JournalSource => ({
    id: id.repeat(64).slice(0, 64),
    name,
    image: 'busybox',
    labels,
    livePath: join(root, name, 'container.log'),
  });

  it('merges sources in time order with a cursor per line, and resumes exactly', async () => {
    const d = dir();
    const a = src(d, 'a', 'alpha');
    const b = src(d, 'b', 'beta');
    for (const s of [a, b]) {
      rmSync(join(d, s.name), { recursive: true, force: true });
      mkdirSync(join(d, s.name), { recursive: true });
    }
    writeFileSync(a.livePath, rec(1, 'a1') + rec(3, 'a3') + rec(3, 'a3bis') + rec(6, 'a6'));
    writeFileSync(b.livePath, rec(2, 'b2') + rec(3, 'b3') + rec(5, 'b5', 'stderr'));
    const all: { cursor: string; text: string }[] = [];
    for await (const batch of readJournal(() => [b, a], {}))
      all.push(...batch.map((e) => ({ cursor: e.cursor, text: e.line.text.toString() })));
    // Ties in time go by container id, then position.
    assert.deepEqual(
      all.map((e) => e.text),
      ['a1', 'b2', 'a3', 'a3bis', 'b3', 'b5', 'a6'],
    );
    for (let k = 0; k < all.length; k++) {
      const rest: string[] = [];
      for await (const batch of readJournal(() => [a, b], {
        after: decodeCursor(all[k]?.cursor ?? ''),
      }))
        rest.push(...batch.map((e) => e.line.text.toString()));
      assert.deepEqual(
        rest,
        all.slice(k + 1).map((e) => e.text),
        `after ${all[k]?.text}`,
      );
    }
    const grep: string[] = [];
    for await (const batch of readJournal(() => [a, b], { grep: /3/ }))
      grep.push(...batch.map((e) => e.line.text.toString()));
    assert.deepEqual(grep, ['a3', 'a3bis', 'b3']);
  });

  it('cursors round-trip and garbage is refused', () => {
    const c = { ts: ts(5), id: 'f'.repeat(64), seq: 3, offset: 1234 };
    assert.deepEqual(decodeCursor(encodeCursor(c)), c);
    assert.equal(decodeCursor('garbage'), undefined);
    assert.equal(decodeCursor(Buffer.from('x|y|z|w').toString('base64url')), undefined);
  });
});
