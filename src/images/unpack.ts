// Unpacks one image layer, as downloaded, into its own fresh directory, ready to be stacked
// as an overlay lower dir. Work is split across threads so that neither stalls the other
// nor the daemon: this thread reads the blob, tells its compression by magic bytes,
// inflates it (zlib runs in the thread pool) and hashes the tar stream for the diffID; a
// worker thread (unpack-worker.ts) parses the tar and writes the files (layer-writer.ts,
// where the safety rules live).
import { createHash } from 'node:crypto';
import { lstat, readdir, realpath, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Worker } from 'node:worker_threads';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { BerthError, ERROR_CODES, errorMessage } from '../util/errors.ts';
import type { ErrorCode } from '../util/errors.ts';
import type { LayerCounts } from './layer-writer.ts';
import type { FromWorker, ToWorker, WireError, WorkerInput } from './unpack-worker.ts';

export type Compression = 'gzip' | 'zstd' | 'none';

export interface UnpackOptions {
  // Entries of any kind, counted after PAX and long-name headers are merged. Bounds the
  // memory of the path model (~150 bytes an entry) as well as the work.
  readonly maxEntries?: number;
  // Uncompressed tar bytes (what the diffID covers): the bound on a decompression bomb.
  readonly maxBytes?: number;
  // Bytes in an entry's name or link target; Linux's PATH_MAX by default.
  readonly maxPathLength?: number;
  // When given ("sha256:<hex>"), a layer whose uncompressed digest differs is refused and
  // emptied before its directories get their metadata, so a caller cannot forget the check.
  readonly diffId?: string;
  readonly signal?: AbortSignal;
}

export interface LayerStats {
  // "sha256:<hex>" of the uncompressed tar stream, trailing padding included: compare it
  // with the image config's rootfs.diff_ids.
  readonly diffId: string;
  readonly compression: Compression;
  readonly compressedBytes: number;
  readonly tarBytes: number;
  readonly entries: number;
  readonly files: number;
  // Regular-file content written.
  readonly bytes: number;
  readonly dirs: number;
  readonly symlinks: number;
  readonly hardlinks: number;
  // Character and block devices and fifos from the layer (whiteouts are counted apart).
  readonly devices: number;
  readonly whiteouts: number;
  readonly opaqueDirs: number;
  readonly xattrs: number;
  // Xattrs not allowed in a layer (tar-safety.ts) or on that kind of entry, and AUFS
  // bookkeeping entries.
  readonly skipped: number;
}

export const UNPACK_DEFAULTS = {
  maxEntries: 1_000_000,
  maxBytes: 128 * 2 ** 30,
  maxPathLength: 4096,
} as const;

const CHUNK = 64 * 1024;
// Inflated bytes the worker may have queued: enough to keep it busy while zlib works.
const IN_FLIGHT = 4 << 20;

function detect(head: Buffer): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) {
    throw new BerthError('IMAGE_INVALID', 'Layer is xz-compressed, which is not supported');
  }
  // "BZh", a block size digit and the block magic: a plain tar may start with "BZh" too.
  if (
    head.toString('latin1', 0, 3) === 'BZh' &&
    head.subarray(4, 10).equals(Buffer.from([0x31, 0x41, 0x59, 0x26, 0x53, 0x59]))
  ) {
    throw new BerthError('IMAGE_INVALID', 'Layer is bzip2-compressed, which is not supported');
  }
  return 'none';
}

function asBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
  throw new BerthError('INTERNAL', 'Layer input must be a byte stream');
}

function revive(e: WireError): Error {
  if (e.code !== undefined && e.code in ERROR_CODES) {
    return new BerthError(e.code as ErrorCode, e.message, e.details);
  }
  return new BerthError(
    'INTERNAL',
    `Unpacking layer: ${e.message}`,
    e.errno ? { errno: e.errno } : {},
  );
}

// The worker and the flow control to it: at most IN_FLIGHT bytes sent and not yet written.
class UnpackThread {
  readonly #worker: Worker;
  readonly #done: Promise<LayerCounts>;
  #inFlight = 0;
  #drained: (() => void) | undefined;
  #failure: unknown;

  constructor(input: WorkerInput) {
    this.#worker = new Worker(new URL('./unpack-worker.js', import.meta.url), {
      workerData: input,
    });
    this.#done = new Promise<LayerCounts>((resolve, reject) => {
      this.#worker.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'ack':
            this.#inFlight -= m.bytes;
            if (this.#inFlight <= IN_FLIGHT / 2) this.#drained?.();
            break;
          case 'done':
            resolve(m.counts);
            break;
          case 'error':
            reject(revive(m.error));
            break;
        }
      });
      this.#worker.on('error', (e) =>
        reject(new BerthError('INTERNAL', `Layer unpack worker failed: ${errorMessage(e)}`)),
      );
      this.#worker.on('exit', (code) =>
        reject(new BerthError('INTERNAL', `Layer unpack worker exited early (${code})`)),
      );
    });
    // Seen by the next write(), so that a refused layer stops the download at once.
    this.#done.catch((e: unknown) => {
      this.#failure = e;
      this.#drained?.();
    });
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    // A copy the worker can own: chunks may be views of a buffer shared with others.
    const copy = new Uint8Array(chunk);
    const m: ToWorker = { type: 'data', chunk: copy };
    // Counted before the transfer, which detaches copy.
    this.#inFlight += copy.byteLength;
    this.#worker.postMessage(m, [copy.buffer]);
    if (this.#inFlight > IN_FLIGHT) {
      await new Promise<void>((resolve) => (this.#drained = resolve));
      this.#drained = undefined;
      if (this.#failure !== undefined) throw this.#failure;
    }
  }

  finish(): Promise<LayerCounts> {
    const m: ToWorker = { type: 'end' };
    this.#worker.postMessage(m);
    return this.#done;
  }

  // Resolves once the thread is gone, so nothing writes to the layer any more.
  async stop(): Promise<void> {
    await this.#worker.terminate();
  }
}

// Empties destDir (not destDir itself, which is the caller's) after a failure.
async function clear(root: string): Promise<void> {
  for (const name of await readdir(root)) {
    await rm(join(root, name), { recursive: true, force: true });
  }
}

// Unpacks the layer blob `input` (gzip, zstd or plain tar, told apart by magic bytes) into
// destDir, which must be an empty directory the caller made; it is never buffered whole.
// Resolves with the layer's diffID and counts. On any failure destDir is emptied and the
// promise rejects: a bad layer with IMAGE_INVALID naming the entry, a host failure with
// INTERNAL (and its errno in details), an error of the input stream as it came.
export async function unpackLayer(
  input: Readable,
  destDir: string,
  opts: UnpackOptions = {},
): Promise<LayerStats> {
  opts.signal?.throwIfAborted();
  const root = await realpath(destDir);
  if (!(await lstat(root)).isDirectory() || (await readdir(root)).length > 0) {
    throw new BerthError('INTERNAL', `Layer directory ${destDir} is not an empty directory`);
  }
  const limits = {
    maxEntries: opts.maxEntries ?? UNPACK_DEFAULTS.maxEntries,
    maxBytes: opts.maxBytes ?? UNPACK_DEFAULTS.maxBytes,
    maxPathLength: opts.maxPathLength ?? UNPACK_DEFAULTS.maxPathLength,
  };
  const thread = new UnpackThread({ root, ...limits });
  const hash = createHash('sha256');
  const it: AsyncIterator<unknown> = input[Symbol.asyncIterator]();
  let compressedBytes = 0;
  let tarBytes = 0;
  let decompressError: unknown;
  // pipeline hands an input error to the decompressor too, which must not make it look
  // like a corrupt layer.
  let inputError: unknown;
  try {
    // Enough of the head to tell the format by its magic bytes.
    const head: Buffer[] = [];
    let headLength = 0;
    let ended = false;
    while (headLength < 10) {
      const r = await it.next();
      if (r.done) {
        ended = true;
        break;
      }
      const b = asBuffer(r.value);
      head.push(b);
      headLength += b.length;
    }
    const first = Buffer.concat(head);
    const compression = detect(first);
    const source = async function* (): AsyncGenerator<Buffer> {
      compressedBytes += first.length;
      if (first.length > 0) yield first;
      while (!ended) {
        const r = await it.next().catch((e: unknown) => {
          inputError = e;
          throw e;
        });
        if (r.done) break;
        const b = asBuffer(r.value);
        compressedBytes += b.length;
        yield b;
      }
    };
    const consume = async (chunks: AsyncIterable<Buffer>): Promise<void> => {
      for await (const chunk of chunks) {
        tarBytes += chunk.length;
        if (tarBytes > limits.maxBytes) {
          throw new BerthError(
            'IMAGE_INVALID',
            `Layer is over the limit of ${limits.maxBytes} bytes uncompressed`,
          );
        }
        hash.update(chunk);
        await thread.write(chunk);
      }
    };
    const signal = opts.signal ? { signal: opts.signal } : {};
    if (compression === 'none') {
      await pipeline(source, consume, signal);
    } else {
      // A deep output buffer lets zlib inflate ahead while the worker writes.
      const zopts = { chunkSize: CHUNK, readableHighWaterMark: 1 << 20 };
      const decompressor =
        compression === 'gzip' ? createGunzip(zopts) : createZstdDecompress(zopts);
      decompressor.once('error', (e) => (decompressError = e));
      await pipeline(source, decompressor, consume, signal);
    }
    const diffId = `sha256:${hash.digest('hex')}`;
    if (opts.diffId !== undefined && opts.diffId !== diffId) {
      throw new BerthError(
        'IMAGE_INVALID',
        `Layer content is ${diffId}, not the expected diff_id ${opts.diffId}`,
      );
    }
    const counts = await thread.finish();
    return { diffId, compression, compressedBytes, tarBytes, ...counts };
  } catch (e) {
    await it.return?.().catch(() => undefined);
    await thread.stop();
    await clear(root);
    if (e === decompressError && e !== inputError && !(e instanceof BerthError)) {
      throw new BerthError(
        'IMAGE_INVALID',
        `Layer: the compressed stream is corrupt or truncated: ${errorMessage(e)}`,
      );
    }
    throw e;
  } finally {
    await thread.stop();
  }
}
