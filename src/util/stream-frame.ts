// Docker's multiplexed stream framing for non-TTY attach and exec: an 8-byte header
// [stream, 0, 0, 0, size as u32 big-endian] before each chunk. The monitor writes the same
// framing, so berthd passes attach bytes through untouched.

export const STDOUT = 1;
export const STDERR = 2;

export function frame(stream: number, data: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h[0] = stream;
  h.writeUInt32BE(data.length, 4);
  return Buffer.concat([h, data]);
}

// Streaming: a frame's payload is handed on as its bytes arrive, in one or more pieces,
// with no copy and no waiting for the whole frame (a 1 MiB frame arrives in many socket
// reads; buffering it meant copying it over and over). Pieces of different frames are
// never merged; an empty frame produces no call.
export class Demuxer {
  private readonly header = Buffer.alloc(8);
  private headerFill = 0;
  private remaining = 0;
  private stream = STDOUT;
  private readonly onChunk: (stream: number, data: Buffer) => void;

  constructor(onChunk: (stream: number, data: Buffer) => void) {
    this.onChunk = onChunk;
  }

  push(data: Buffer): void {
    let pos = 0;
    while (pos < data.length) {
      if (this.remaining === 0) {
        const n = Math.min(8 - this.headerFill, data.length - pos);
        data.copy(this.header, this.headerFill, pos, pos + n);
        this.headerFill += n;
        pos += n;
        if (this.headerFill < 8) return;
        this.headerFill = 0;
        this.stream = this.header[0] ?? STDOUT;
        this.remaining = this.header.readUInt32BE(4);
        continue;
      }
      const n = Math.min(this.remaining, data.length - pos);
      this.onChunk(this.stream, data.subarray(pos, pos + n));
      this.remaining -= n;
      pos += n;
    }
  }
}
