// Reads a container's CRI log across its rotated (and compressed) files, in order, in
// batches: the inner loop is synchronous over a large buffer, so a whole history streams
// at disk speed. Partial records (P) are joined with the record that ends their line.
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { existsSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import { listLogFiles, type LogFile } from './files.ts';

const gunzipAsync = promisify(gunzip);
const CHUNK = 1 << 20;
const NL = 10;
const SP = 32;

export type Stream = 'stdout' | 'stderr';

export interface LogLine {
  readonly ts: string;
  readonly stream: Stream;
  readonly text: Buffer;
  // The text with its newline, when the file has them side by side (most lines): a
  // writer can pass it on as one slice.
  readonly textNl?: Buffer | undefined;
  // Where the line's last record starts: with the container id, a total order and a cursor.
  readonly seq: number;
  readonly offset: number;
}

export interface ReadOptions {
  readonly since?: string | undefined;
  readonly until?: string | undefined;
  readonly tail?: number | undefined;
  readonly streams?: ReadonlySet<Stream> | undefined;
  // Resume strictly after this position (journal cursors).
  readonly after?: { readonly seq: number; readonly offset: number } | undefined;
  // With follow, reading goes on until this resolves (the container stopped), then drains.
  readonly follow?: Promise<unknown> | undefined;
  readonly signal?: AbortSignal | undefined;
  // Whether lines need their time (for --timestamps or a merge); without it the per-line
  // string is skipped, which is a third of the cost of reading a large log.
  readonly needTs?: boolean | undefined;
}

interface Pending {
  ts: string;
  parts: Buffer[];
}

// Parses the records of buf[0..end) (end at a line boundary) into lines.
class Parser {
  private readonly pending: Record<Stream, Pending | undefined> = {
    stdout: undefined,
    stderr: undefined,
  };
  private readonly o: ReadOptions;
  private readonly needTs: boolean;
  constructor(o: ReadOptions) {
    this.o = o;
    this.needTs = o.needTs === true || o.since !== undefined || o.until !== undefined;
  }

  parse(buf: Buffer, end: number, seq: number, base: number, out: LogLine[]): boolean {
    let pos = 0;
    while (pos < end) {
      let nl = buf.indexOf(NL, pos);
      if (nl < 0 || nl >= end) nl = end;
      const line = pos;
      pos = nl + 1;
      const sp1 = buf.indexOf(SP, line);
      if (sp1 < 0 || sp1 + 10 > nl) continue; // not a CRI record: skip it
      const stream: Stream | undefined =
        buf[sp1 + 4] === 111 /* o */
          ? 'stdout'
          : buf[sp1 + 4] === 101 /* e */
            ? 'stderr'
            : undefined;
      if (!stream || buf[sp1 + 7] !== SP || buf[sp1 + 9] !== SP) continue;
      const partial = buf[sp1 + 8] === 80; /* P */
      const ts = this.needTs ? buf.toString('latin1', line, sp1) : '';
      const o = this.o;
      if (o.until !== undefined && ts > o.until) return false;
      if (o.streams && !o.streams.has(stream)) continue;
      const text = buf.subarray(sp1 + 10, nl);
      const p = this.pending[stream];
      if (partial) {
        if (p) p.parts.push(Buffer.from(text));
        else this.pending[stream] = { ts, parts: [Buffer.from(text)] };
        continue;
      }
      const offset = base + line;
      if (o.after && (seq < o.after.seq || (seq === o.after.seq && offset <= o.after.offset))) {
        this.pending[stream] = undefined;
        continue;
      }
      const lineTs = p ? p.ts : ts;
      if (o.since !== undefined && lineTs < o.since) {
        this.pending[stream] = undefined;
        continue;
      }
      if (p) {
        p.parts.push(text);
        this.pending[stream] = undefined;
        out.push({ ts: lineTs, stream, text: Buffer.concat(p.parts), seq, offset });
      } else {
        out.push({
          ts,
          stream,
          text,
          textNl: nl < end ? buf.subarray(sp1 + 10, nl + 1) : undefined,
          seq,
          offset,
        });
      }
    }
    return true;
  }
}

async function readAt(fh: FileHandle, pos: number, len: number): Promise<Buffer> {
  const b = Buffer.allocUnsafe(len);
  const { bytesRead } = await fh.read(b, 0, len, pos);
  return b.subarray(0, bytesRead);
}

// First byte of the record at or after pos.
async function lineStartAfter(fh: FileHandle, pos: number): Promise<number> {
  if (pos === 0) return 0;
  const b = await readAt(fh, pos - 1, 65536);
  const i = b.indexOf(NL);
  return i < 0 ? pos - 1 + b.length : pos + i;
}

async function tsAt(fh: FileHandle, pos: number): Promise<string | undefined> {
  const b = await readAt(fh, pos, 64);
  const sp = b.indexOf(SP);
  return sp > 0 ? b.toString('latin1', 0, sp) : undefined;
}

// Binary search for the first record with ts >= since (records are in time order).
async function seekSince(fh: FileHandle, size: number, since: string): Promise<number> {
  let lo = 0;
  let hi = size;
  while (hi - lo > 65536) {
    const mid = await lineStartAfter(fh, Math.floor((lo + hi) / 2));
    if (mid >= hi) break;
    const ts = await tsAt(fh, mid);
    if (ts === undefined || ts < since) lo = mid;
    else hi = mid;
  }
  return lo;
}

async function lastTs(fh: FileHandle, size: number): Promise<string | undefined> {
  if (size === 0) return undefined;
  const start = Math.max(0, size - 65536);
  const b = await readAt(fh, start, size - start);
  const end = b[b.length - 1] === NL ? b.length - 1 : b.length;
  const nl = b.lastIndexOf(NL, end - 1);
  if (nl < 0 && start > 0) return undefined;
  const sp = b.indexOf(SP, nl + 1);
  return sp > 0 ? b.toString('latin1', nl + 1, sp) : undefined;
}

// Counts complete lines (F records of the chosen streams) in buf, backwards from the end.
function countLinesBackwards(
  buf: Buffer,
  streams: ReadonlySet<Stream> | undefined,
  want: number,
): { count: number; start: number } {
  let count = 0;
  let end = buf.length;
  if (end > 0 && buf[end - 1] === NL) end--;
  while (end > 0) {
    const nl = buf.lastIndexOf(NL, end - 1);
    const line = nl + 1;
    const sp = buf.indexOf(SP, line);
    if (sp > 0 && sp + 9 < end && buf[sp + 8] === 70 /* F */) {
      const stream: Stream = buf[sp + 4] === 111 ? 'stdout' : 'stderr';
      if (!streams || streams.has(stream)) {
        count++;
        if (count > want) return { count: count - 1, start: end + 1 };
      }
    }
    if (nl < 0) break;
    end = nl;
  }
  return { count, start: 0 };
}

async function fileContents(f: LogFile): Promise<Buffer> {
  const raw = await readFile(f.path);
  return f.gz ? await gunzipAsync(raw) : raw;
}

// Where to start for --tail N: the file index and offset of the N-th line from the end.
async function tailStart(
  files: LogFile[],
  n: number,
  streams: ReadonlySet<Stream> | undefined,
): Promise<{ index: number; offset: number }> {
  let need = n;
  for (let i = files.length - 1; i >= 0; i--) {
    const f = files[i] as LogFile;
    if (f.gz) {
      const buf = await fileContents(f);
      const r = countLinesBackwards(buf, streams, need);
      if (r.count >= need) return { index: i, offset: r.start };
      need -= r.count;
      continue;
    }
    const fh = await open(f.path, 'r');
    try {
      const size = (await fh.stat()).size;
      // Read backwards in growing windows until enough lines are in view.
      let window = 65536;
      for (;;) {
        const start = Math.max(0, size - window);
        const aligned = await lineStartAfter(fh, start);
        const buf = await readAt(fh, aligned, size - aligned);
        const r = countLinesBackwards(buf, streams, need);
        if (r.count >= need) return { index: i, offset: aligned + r.start };
        if (start === 0) {
          need -= r.count;
          break;
        }
        window *= 4;
      }
    } finally {
      await fh.close();
    }
  }
  return { index: 0, offset: 0 };
}

// Yields batches of lines in order. Files are taken by sequence number, so a reader that
// falls behind several rotations still reads every file in between. With `follow`, keeps
// reading the live file as it grows and across rotations (by inode) until `follow`
// resolves, then reads what is left.
export async function* readLog(livePath: string, o: ReadOptions = {}): AsyncGenerator<LogLine[]> {
  const parser = new Parser(o);
  let files = listLogFiles(livePath);
  let startIndex = 0;
  let startOffset = 0;
  if (o.tail !== undefined) {
    if (o.tail === 0 && !o.follow) return;
    const last = files[files.length - 1];
    const t =
      o.tail === 0
        ? { index: Math.max(0, files.length - 1), offset: last ? (await stat(last.path)).size : 0 }
        : await tailStart(files, o.tail, o.streams);
    startIndex = t.index;
    startOffset = t.offset;
  }
  if (o.after) {
    while (startIndex < files.length && (files[startIndex] as LogFile).seq < o.after.seq)
      startIndex++;
  }
  const firstSeq = files[startIndex]?.seq ?? 1;
  let nextSeq = firstSeq;

  // One listener each on the stop signals for the whole read, not one per nap: a long
  // `logs -f` naps every quarter second.
  let followDone = false;
  let wake: (() => void) | undefined;
  void o.follow?.then(() => {
    followDone = true;
    wake?.();
  });
  const onAbort = () => wake?.();
  o.signal?.addEventListener('abort', onAbort, { once: true });
  let watcher: FSWatcher | undefined;
  const nap = (ms: number) =>
    new Promise<void>((r) => {
      const t = setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(t);
        wake = undefined;
        r();
      };
      wake = done;
      if (followDone || o.signal?.aborted) done();
    });
  if (o.follow) {
    try {
      watcher = watch(dirname(livePath), () => wake?.());
    } catch {
      /* poll only */
    }
  }
  try {
    for (;;) {
      // The file with the next sequence number, or the first after it (if retention
      // removed it meanwhile, its lines are gone: go on with what is kept).
      let f = files.find((x) => x.seq >= nextSeq);
      if (f && f.seq > nextSeq) {
        // A listing taken while the compressor renamed .N to .N.gz can show neither;
        // look the file up by name before taking it for pruned.
        const plain = `${livePath}.${nextSeq}`;
        if (existsSync(plain)) f = { path: plain, seq: nextSeq, gz: false, live: false };
        else if (existsSync(`${plain}.gz`))
          f = { path: `${plain}.gz`, seq: nextSeq, gz: true, live: false };
      }
      if (!f) {
        if (!o.follow || followDone || o.signal?.aborted) return;
        await nap(200);
        files = listLogFiles(livePath);
        continue;
      }
      nextSeq = f.seq;
      const from = f.seq === firstSeq ? startOffset : 0;
      if (!f.live) {
        const more = yield* readWholeFile(f, from, parser, o.since);
        if (!more) return;
        nextSeq++;
        files = listLogFiles(livePath);
        continue;
      }
      let fh: FileHandle;
      try {
        fh = await open(f.path, 'r');
      } catch {
        if (o.signal?.aborted) return;
        await nap(100); // rotated away between listing and opening, or out of fds
        files = listLogFiles(livePath);
        continue;
      }
      try {
        // The live file is f.seq only while no rotated file has that number: a rotation
        // between listing and opening (or a listing torn by one) would have us read a
        // later file under f's number. Looked up by name, not by another listing.
        if (existsSync(`${livePath}.${f.seq}`) || existsSync(`${livePath}.${f.seq}.gz`)) {
          files = listLogFiles(livePath);
          continue;
        }
        const ino = (await fh.stat()).ino;
        let pos = from;
        if (o.since !== undefined && pos === 0)
          pos = await seekSince(fh, (await fh.stat()).size, o.since);
        for (;;) {
          const r = yield* readRange(fh, pos, (await fh.stat()).size, f.seq, parser, !o.follow);
          pos = r.pos;
          if (!r.more || !o.follow) return;
          const cur = await stat(livePath).catch(() => undefined);
          if (!cur || cur.ino !== ino) {
            // Rotated: this file is now f.seq, complete; the rest of it is still ours.
            const rest = yield* readRange(fh, pos, (await fh.stat()).size, f.seq, parser, true);
            if (!rest.more) return;
            nextSeq = f.seq + 1;
            files = listLogFiles(livePath);
            break;
          }
          if (followDone || o.signal?.aborted) {
            // One last look: output written just before the exit.
            yield* readRange(fh, pos, (await fh.stat()).size, f.seq, parser, true);
            return;
          }
          await nap(250);
        }
      } finally {
        await fh.close();
      }
    }
  } finally {
    watcher?.close();
    o.signal?.removeEventListener('abort', onAbort);
  }
}

// A rotated file: complete and never written again.
async function* readWholeFile(
  f: LogFile,
  from: number,
  parser: Parser,
  since: string | undefined,
): AsyncGenerator<LogLine[], boolean> {
  if (f.gz) {
    let buf: Buffer;
    try {
      buf = await fileContents(f);
    } catch {
      return true; // pruned while we were getting to it
    }
    const out: LogLine[] = [];
    const more = parser.parse(buf.subarray(from), buf.length - from, f.seq, from, out);
    if (out.length) yield out;
    return more;
  }
  let fh: FileHandle;
  try {
    fh = await open(f.path, 'r');
  } catch {
    // Compressed or pruned since we listed it.
    return yield* readWholeFile({ ...f, path: `${f.path}.gz`, gz: true }, from, parser, since);
  }
  try {
    const size = (await fh.stat()).size;
    let pos = from;
    if (since !== undefined) {
      const last = await lastTs(fh, size);
      if (last !== undefined && last < since) return true;
      pos = Math.max(pos, await seekSince(fh, size, since));
    }
    const r = yield* readRange(fh, pos, size, f.seq, parser, true);
    return r.more;
  } finally {
    await fh.close();
  }
}

// Reads whole records from [pos, size); an unterminated last record is left for later
// (the monitor is mid-write) unless `flushTail`.
async function* readRange(
  fh: FileHandle,
  start: number,
  size: number,
  seq: number,
  parser: Parser,
  flushTail = false,
): AsyncGenerator<LogLine[], { pos: number; more: boolean }> {
  let pos = start;
  while (pos < size) {
    const buf = await readAt(fh, pos, Math.min(CHUNK, size - pos));
    if (buf.length === 0) break;
    let end = buf.lastIndexOf(NL) + 1;
    if (end === 0) {
      if (buf.length < CHUNK && !flushTail) break;
      end = buf.length; // a record longer than a chunk, or a final unterminated one
    }
    const out: LogLine[] = [];
    const more = parser.parse(buf, end, seq, pos, out);
    pos += end;
    if (out.length) yield out;
    if (!more) return { pos, more: false };
  }
  return { pos, more: true };
}
