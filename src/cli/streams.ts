// Client side of attach and exec streams: demultiplexing, raw terminal mode, resizes.
import type { Socket } from 'node:net';
import { Demuxer, STDERR } from '../util/stream-frame.ts';

export interface StreamOptions {
  readonly tty: boolean;
  readonly stdin: boolean;
  readonly resize?: (rows: number, cols: number) => Promise<void>;
}

// Copies the stream to our stdout/stderr (and our stdin to it) until the far side closes.
export function pumpStream(sock: Socket, o: StreamOptions): Promise<void> {
  return new Promise((resolve) => {
    let restore = () => undefined as void;
    if (o.tty && process.stdin.isTTY && o.stdin) {
      process.stdin.setRawMode(true);
      restore = () => {
        process.stdin.setRawMode(false);
      };
    }
    if (o.tty) {
      sock.on('data', (b: Buffer) => process.stdout.write(b));
    } else {
      const d = new Demuxer((stream, data) =>
        (stream === STDERR ? process.stderr : process.stdout).write(data),
      );
      sock.on('data', (b: Buffer) => d.push(b));
    }
    if (o.stdin) {
      process.stdin.on('data', (b: Buffer) => sock.write(b));
      // Our stdin's end is the container's: half-close so output keeps flowing back.
      process.stdin.on('end', () => sock.end());
      process.stdin.resume();
    }
    let onWinch: (() => void) | undefined;
    if (o.tty && o.resize && process.stdout.isTTY) {
      const resize = o.resize;
      onWinch = () =>
        void resize(process.stdout.rows, process.stdout.columns).catch(() => undefined);
      process.on('SIGWINCH', onWinch);
    }
    const done = () => {
      restore();
      if (onWinch) process.off('SIGWINCH', onWinch);
      process.stdin.pause();
      process.stdin.unref?.();
      resolve();
    };
    sock.on('end', done);
    sock.on('close', done);
    sock.on('error', done);
  });
}

export function initialResize(o: StreamOptions): void {
  if (o.tty && o.resize && process.stdout.isTTY) {
    void o.resize(process.stdout.rows, process.stdout.columns).catch(() => undefined);
  }
}
