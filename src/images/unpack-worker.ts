// The unpack worker: one thread per layer, fed the uncompressed tar stream by
// unpackLayer (unpack.ts). It parses and writes with synchronous filesystem calls, which
// are fast here and never stall the daemon's event loop.
import { parentPort, workerData } from 'node:worker_threads';
import { BerthError, errorMessage } from '../util/errors.ts';
import { LayerWriter, errnoOf } from './layer-writer.ts';
import type { LayerCounts, WriterLimits } from './layer-writer.ts';
import { TarReader } from './tar-reader.ts';

export interface WorkerInput extends WriterLimits {
  readonly root: string;
}

export type ToWorker =
  { readonly type: 'data'; readonly chunk: Uint8Array } | { readonly type: 'end' };

export interface WireError {
  readonly code?: string;
  readonly message: string;
  readonly details?: Record<string, unknown>;
  readonly errno?: string;
}

export type FromWorker =
  | { readonly type: 'ack'; readonly bytes: number }
  | { readonly type: 'done'; readonly counts: LayerCounts }
  | { readonly type: 'error'; readonly error: WireError };

function toWire(e: unknown): WireError {
  if (e instanceof BerthError) {
    return { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) };
  }
  const errno = errnoOf(e);
  return { message: errorMessage(e), ...(errno ? { errno } : {}) };
}

const port = parentPort;
if (port) {
  const input = workerData as WorkerInput;
  const writer = new LayerWriter(input.root, input);
  const reader = new TarReader(writer);
  const queue: ToWorker[] = [];
  let wake: (() => void) | undefined;
  port.on('message', (m: ToWorker) => {
    queue.push(m);
    wake?.();
  });
  const post = (m: FromWorker): void => port.postMessage(m);
  const run = async (): Promise<void> => {
    for (;;) {
      const m = queue.shift();
      if (m === undefined) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      if (m.type === 'end') break;
      await reader.write(Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength));
      post({ type: 'ack', bytes: m.chunk.byteLength });
    }
    reader.end();
    await writer.finish();
  };
  run().then(
    () => {
      post({ type: 'done', counts: writer.counts });
      port.close();
    },
    (e: unknown) => {
      writer.abort();
      post({ type: 'error', error: toWire(e) });
      port.close();
    },
  );
}
