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

export class Demuxer {
  private buf: Buffer = Buffer.alloc(0);
  private readonly onChunk: (stream: number, data: Buffer) => void;

  constructor(onChunk: (stream: number, data: Buffer) => void) {
    this.onChunk = onChunk;
  }

  push(data: Buffer): void {
    this.buf = this.buf.length === 0 ? data : Buffer.concat([this.buf, data]);
    while (this.buf.length >= 8) {
      const size = this.buf.readUInt32BE(4);
      if (this.buf.length < 8 + size) break;
      const stream = this.buf[0] ?? STDOUT;
      this.onChunk(stream, this.buf.subarray(8, 8 + size));
      this.buf = this.buf.subarray(8 + size);
    }
  }
}
