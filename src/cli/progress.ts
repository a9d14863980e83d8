// Renders a pull/push/load progress stream: docker's jsonmessage lines, one JSON object per
// line. On a terminal each layer id keeps one line, redrawn in place with cursor movement
// the way docker's jsonmessage.DisplayJSONMessagesStream does it; elsewhere each id prints a
// plain line only when its status changes, so a log never gets one line per chunk.
//
// Written by hand rather than with cli-progress: its MultiBar owns a block of bars that it
// redraws on a timer, prints log() lines above that block rather than in stream order (so
// "Digest: ..." would land above the layers, not after them), has no way to print a line
// once and leave it (docker's status lines without an id), and off a terminal it either
// prints nothing or the whole block every few seconds, never one line per status change.
// Docker's layout is simpler than any of that: a map from id to line and two escape codes.
import type { JsonMessage } from '../client/index.ts';
import { BerthError, ERROR_CODES, type ErrorCode } from '../util/errors.ts';

export type { JsonMessage };

// What the renderer writes to: process.stdout, or a fake in tests.
export interface ProgressOutput {
  write(s: string): unknown;
  readonly isTTY?: boolean | undefined;
  readonly columns?: number | undefined;
}

export interface ProgressOptions {
  // Overrides out.isTTY.
  readonly tty?: boolean;
  // Only messages this accepts are shown (errors always end the stream).
  readonly show?: (m: JsonMessage) => boolean;
}

// docker's units.HumanSizeWithPrecision: decimal units, `precision` significant digits.
export function humanSize(n: number, precision = 4): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(precision))}${units[i]}`;
}

// docker's JSONProgress.String(): a 50-column bar when the terminal is wider than 110
// columns, then current/total.
export function progressText(detail: { current?: number; total?: number }, width: number): string {
  const current = detail.current ?? 0;
  const total = detail.total ?? 0;
  if (current <= 0 && total <= 0) return '';
  if (total <= 0) return humanSize(current).padStart(8);
  const pct = Math.min(50, Math.floor(Math.floor((current / total) * 100) / 2));
  const bar = width > 110 ? `[${'='.repeat(pct)}>${' '.repeat(Math.max(0, 50 - pct))}] ` : '';
  const numbers =
    current > total
      ? humanSize(current).padStart(8)
      : `${humanSize(current).padStart(8)}/${humanSize(total)}`;
  return bar + numbers;
}

export function messageError(m: JsonMessage): BerthError | undefined {
  if (m.errorDetail === undefined && m.error === undefined) return undefined;
  const code = m.errorDetail?.code;
  const known = typeof code === 'string' && code in ERROR_CODES ? (code as ErrorCode) : undefined;
  const message = m.errorDetail?.message ?? m.error ?? 'unknown error';
  if (code === 401 && known === undefined)
    return new BerthError('REGISTRY_AUTH_FAILED', 'authentication is required');
  return new BerthError(known ?? 'INTERNAL', message);
}

const ESC = '\x1b[';

export class ProgressRenderer {
  private readonly out: ProgressOutput;
  private readonly tty: boolean;
  private readonly show: (m: JsonMessage) => boolean;
  // Terminal: the line of each id, counted from the first of the block; the cursor sits
  // on the line below the block.
  private lines = new Map<string, number>();
  // Elsewhere: the last status printed for each id.
  private readonly printed = new Map<string, string>();
  private failure: BerthError | undefined;

  constructor(out: ProgressOutput, opts: ProgressOptions = {}) {
    this.out = out;
    this.tty = opts.tty ?? out.isTTY === true;
    this.show = opts.show ?? (() => true);
  }

  get error(): BerthError | undefined {
    return this.failure;
  }

  // Shows one message; returns false once the stream has failed (later messages are not
  // shown: docker stops at the first error).
  push(m: JsonMessage): boolean {
    if (this.failure) return false;
    const err = messageError(m);
    if (err) {
      this.failure = err;
      return false;
    }
    if (m.aux !== undefined || !this.show(m)) return true;
    if (this.tty) this.pushTty(m);
    else this.pushPlain(m);
    return true;
  }

  // Ends the display: throws the stream's error, if it had one.
  finish(): void {
    if (this.failure) throw this.failure;
  }

  private width(): number {
    const c = this.out.columns;
    return typeof c === 'number' && c > 0 ? c : 200;
  }

  private lineOf(m: JsonMessage): string {
    if (m.stream !== undefined) return m.stream;
    const status = m.status ?? '';
    let text = status;
    const bar = m.progressDetail ? progressText(m.progressDetail, this.width()) : '';
    if (bar) text = `${status} ${bar}`;
    else if (m.progress) text = `${status} ${m.progress}`;
    return m.id ? `${m.id}: ${text}` : text;
  }

  private pushTty(m: JsonMessage): void {
    if (!m.id || m.stream !== undefined) {
      // Something that is not a layer line: later layer lines start a new block, so an
      // earlier block is never redrawn (docker's rule).
      this.lines = new Map();
      const text = this.lineOf(m);
      this.out.write(m.stream !== undefined ? text : `${text}\n`);
      return;
    }
    let line = this.lines.get(m.id);
    if (line === undefined) {
      line = this.lines.size;
      this.lines.set(m.id, line);
      this.out.write('\n');
    }
    const up = this.lines.size - line;
    // A line wider than the terminal would wrap and throw every cursor movement off.
    const text = this.lineOf(m).slice(0, Math.max(1, this.width() - 1));
    this.out.write(`${ESC}${up}A${ESC}2K\r${text}\r${ESC}${up}B`);
  }

  private pushPlain(m: JsonMessage): void {
    if (m.stream !== undefined) {
      this.out.write(m.stream);
      return;
    }
    const status = m.status ?? '';
    if (!m.id) {
      if (status) this.out.write(`${status}\n`);
      return;
    }
    if (this.printed.get(m.id) === status) return;
    this.printed.set(m.id, status);
    this.out.write(`${m.id}: ${status}\n`);
  }
}

// Shows a whole stream; resolves when it ends, rejects with the stream's error (after the
// display is complete) or with the connection's.
export async function displayProgress(
  messages: AsyncIterable<JsonMessage>,
  out: ProgressOutput,
  opts: ProgressOptions = {},
): Promise<void> {
  const r = new ProgressRenderer(out, opts);
  for await (const m of messages) if (!r.push(m)) break;
  r.finish();
}

// A ProgressOutput for quiet modes: shows nothing, still fails on an error line.
export const DISCARD: ProgressOutput = { write: () => true, isTTY: false };
