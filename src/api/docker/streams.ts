// Streams on the Docker surface: log lines in Docker's 8-byte framing (raw with a
// terminal), writes with backpressure, Docker's boolean query forms, and the view of a
// hijacked connection the engine gets (a client's half-close without stdin kept from it,
// only the streams a client asked for).
import { Duplex } from 'node:stream';
import { Demuxer, frame, STDERR, STDOUT } from '../../util/stream-frame.ts';

// dockerd's httputils.BoolValue: anything but "", 0, no, false and none is true.
export function dockerBool(v: string | null | undefined): boolean {
  if (v === undefined || v === null) return false;
  const s = v.trim().toLowerCase();
  return !(s === '' || s === '0' || s === 'no' || s === 'false' || s === 'none');
}

// A hijacked connection as the engine should see it. The docker CLI half-closes its side
// at once when it sends no stdin (its hijack always ends with CloseWrite): that EOF is not
// a viewer leaving, so without stdin it is kept from the engine, and only the connection's
// close (or a failed write) ends the stream. With `filter`, only the wanted streams of
// framed output pass (docker run -a stdout).
export class ClientStream extends Duplex {
  private readonly sock: Duplex;
  private readonly demux: Demuxer | undefined;

  constructor(
    sock: Duplex,
    o: { readonly passEof: boolean; readonly filter?: { stdout: boolean; stderr: boolean } },
  ) {
    super({ allowHalfOpen: true });
    this.sock = sock;
    const want = o.filter;
    this.demux = want
      ? new Demuxer((stream, data) => {
          if ((stream === STDOUT && want.stdout) || (stream === STDERR && want.stderr))
            sock.write(frame(stream, data));
        })
      : undefined;
    sock.on('data', (d: Buffer) => {
      if (!this.push(d)) sock.pause();
    });
    sock.on('end', () => {
      if (o.passEof) this.push(null);
    });
    sock.on('close', () => this.destroy());
    sock.on('error', () => this.destroy());
  }

  override _read(): void {
    this.sock.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.sock.destroyed) return cb();
    if (this.demux) this.demux.push(chunk);
    else this.sock.write(chunk);
    if (this.sock.writableNeedDrain) this.sock.once('drain', () => cb());
    else cb();
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.sock.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.sock.destroy();
    cb(err);
  }
}

// The write side of an exec that runs detached: its output goes nowhere, and its input
// never ends.
export function nullStream(): Duplex {
  return new Duplex({
    read() {},
    write(_c, _e, cb) {
      cb();
    },
  });
}
