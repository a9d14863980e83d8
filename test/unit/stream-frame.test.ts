import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Demuxer, frame, STDERR, STDOUT } from '../../src/util/stream-frame.ts';

type Chunk = [number, string];

function collect(): { chunks: Chunk[]; d: Demuxer } {
  const chunks: Chunk[] = [];
  const d = new Demuxer((s, data) => chunks.push([s, data.toString('latin1')]));
  return { chunks, d };
}

// Adjacent pieces of one stream joined and empty ones dropped: the demuxer may hand a
// frame on in pieces, so only this view is independent of where the splits land.
function merged(chunks: readonly Chunk[]): Chunk[] {
  const out: Chunk[] = [];
  for (const [s, d] of chunks) {
    if (d === '') continue;
    const last = out[out.length - 1];
    if (last && last[0] === s) last[1] += d;
    else out.push([s, d]);
  }
  return out;
}

describe('frame', () => {
  it('writes the 8-byte header [stream,0,0,0,size u32 BE] before the data', () => {
    const f = frame(STDERR, Buffer.from('hello'));
    assert.deepEqual([...f.subarray(0, 8)], [2, 0, 0, 0, 0, 0, 0, 5]);
    assert.equal(f.subarray(8).toString(), 'hello');
    assert.equal(f.length, 13);
  });

  it('encodes sizes above 255 big-endian', () => {
    const f = frame(STDOUT, Buffer.alloc(0x010203));
    assert.deepEqual([...f.subarray(0, 8)], [1, 0, 0, 0, 0, 0x01, 0x02, 0x03]);
  });

  it('frames empty data as a bare header', () => {
    assert.deepEqual([...frame(STDOUT, Buffer.alloc(0))], [1, 0, 0, 0, 0, 0, 0, 0]);
  });
});

describe('Demuxer', () => {
  const frames: [number, string][] = [
    [STDOUT, 'first line\n'],
    [STDERR, 'an error\n'],
    [STDOUT, ''],
    [STDOUT, 'x'.repeat(300)],
    [STDERR, '\u00ff\u0000binary\u0001'],
  ];
  const wire = Buffer.concat(frames.map(([s, d]) => frame(s, Buffer.from(d, 'latin1'))));

  it('decodes one frame per push', () => {
    const { chunks, d } = collect();
    for (const [s, data] of frames) d.push(frame(s, Buffer.from(data, 'latin1')));
    assert.deepEqual(merged(chunks), merged(frames));
  });

  it('decodes several frames in one chunk', () => {
    const { chunks, d } = collect();
    d.push(wire);
    assert.deepEqual(merged(chunks), merged(frames));
  });

  it('decodes frames fed one byte at a time', () => {
    const { chunks, d } = collect();
    for (let i = 0; i < wire.length; i++) d.push(wire.subarray(i, i + 1));
    assert.deepEqual(merged(chunks), merged(frames));
  });

  it('decodes frames split at every possible single boundary', () => {
    for (let cut = 0; cut <= wire.length; cut++) {
      const { chunks, d } = collect();
      d.push(wire.subarray(0, cut));
      d.push(wire.subarray(cut));
      assert.deepEqual(merged(chunks), merged(frames), `cut at ${cut}`);
    }
  });

  it('decodes frames split at pseudo-random boundaries', () => {
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed;
    };
    for (let round = 0; round < 50; round++) {
      const { chunks, d } = collect();
      let i = 0;
      while (i < wire.length) {
        const n = 1 + (rand() % 40);
        d.push(wire.subarray(i, i + n));
        i += n;
      }
      assert.deepEqual(merged(chunks), merged(frames), `round ${round}`);
    }
  });

  it('holds a partial header, then hands the body on as it arrives', () => {
    const { chunks, d } = collect();
    const f = frame(STDERR, Buffer.from('abcdef'));
    d.push(f.subarray(0, 5));
    assert.equal(chunks.length, 0, 'nothing before the header is whole');
    d.push(f.subarray(5, 10));
    assert.deepEqual(chunks, [[STDERR, 'ab']], 'body bytes go on at once');
    d.push(f.subarray(10));
    assert.deepEqual(merged(chunks), [[STDERR, 'abcdef']]);
  });

  it('never merges two frames and keeps the stream of each piece', () => {
    const { chunks, d } = collect();
    const a = frame(STDOUT, Buffer.from('one'));
    const b = frame(STDERR, Buffer.from('two'));
    d.push(Buffer.concat([a, b.subarray(0, 9)]));
    assert.deepEqual(chunks, [
      [STDOUT, 'one'],
      [STDERR, 't'],
    ]);
    d.push(b.subarray(9));
    assert.deepEqual(merged(chunks), [
      [STDOUT, 'one'],
      [STDERR, 'two'],
    ]);
  });

  it('accepts empty pushes', () => {
    const { chunks, d } = collect();
    d.push(Buffer.alloc(0));
    d.push(wire);
    d.push(Buffer.alloc(0));
    assert.deepEqual(merged(chunks), merged(frames));
  });
});
