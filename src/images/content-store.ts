// Blobs by digest: `<dir>/sha256/<hex>`, each verified before it gets its name, so a file
// under its digest is always that content. Partial downloads live under `<dir>/partial/`
// by digest, so a pull cut short resumes where it stopped; other writes go to a private
// temporary file and are renamed into place whole.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import type { ReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BerthError } from '../util/errors.ts';
import { parseDigest } from './reference.ts';

export interface BlobInfo {
  readonly digest: string;
  readonly size: number;
}

function invalidBlob(message: string): BerthError {
  return new BerthError('IMAGE_INVALID', message);
}

export class ContentStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  async init(): Promise<void> {
    await mkdir(join(this.dir, 'sha256'), { recursive: true, mode: 0o700 });
    await mkdir(join(this.dir, 'partial'), { recursive: true, mode: 0o700 });
    await mkdir(join(this.dir, 'tmp'), { recursive: true, mode: 0o700 });
    // Private temporaries of writes a crash cut short; partial downloads are kept.
    for (const e of await readdir(join(this.dir, 'tmp'))) {
      await rm(join(this.dir, 'tmp', e), { force: true });
    }
  }

  // Only sha256 is stored; other algorithms are refused at the edge.
  path(digest: string): string {
    const d = parseDigest(digest);
    if (d.algorithm !== 'sha256') {
      throw invalidBlob(`Digest ${digest}: only sha256 blobs can be stored`);
    }
    return join(this.dir, 'sha256', d.hex);
  }

  // Where a download of this blob accumulates (RegistryClient.fetchBlob resumes it).
  partialPath(digest: string): string {
    return join(this.dir, 'partial', parseDigest(digest).hex);
  }

  async has(digest: string): Promise<boolean> {
    return (await stat(this.path(digest)).catch(() => undefined))?.isFile() === true;
  }

  async size(digest: string): Promise<number | undefined> {
    return (await stat(this.path(digest)).catch(() => undefined))?.size;
  }

  async readBytes(digest: string): Promise<Buffer> {
    return readFile(this.path(digest));
  }

  open(digest: string): ReadStream {
    return createReadStream(this.path(digest));
  }

  // A finished download: its content is hashed again (a partial file could have been
  // written by anyone) and renamed to its digest, or removed and refused.
  async commitPartial(digest: string, size: number): Promise<void> {
    const part = this.partialPath(digest);
    const got = await hashFile(part);
    if (got.digest !== digest || got.size !== size) {
      await unlink(part).catch(() => undefined);
      throw invalidBlob(
        `Blob ${digest} failed verification: digest mismatch (got ${got.digest}, ${got.size} bytes)`,
      );
    }
    await rename(part, this.path(digest));
  }

  // A download RegistryClient.fetchBlob finished: it hashed every byte, the resumed part
  // included, so the name can be given without reading it again.
  async adoptVerifiedPartial(digest: string): Promise<void> {
    await rename(this.partialPath(digest), this.path(digest));
  }

  // Writes bytes under their digest; with `expect`, refuses other content.
  async putBytes(bytes: Buffer, expect?: string): Promise<BlobInfo> {
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (expect !== undefined && expect !== digest) {
      throw invalidBlob(`Blob ${expect} failed verification: digest mismatch (got ${digest})`);
    }
    if (!(await this.has(digest))) {
      const tmp = this.tmpPath();
      try {
        await writeAll(tmp, bytes);
        await rename(tmp, this.path(digest));
      } catch (e) {
        await rm(tmp, { force: true });
        throw e;
      }
    }
    return { digest, size: bytes.length };
  }

  // Streams into the store, hashing on the way. With `expect` (digest and optionally
  // size) other content is refused and nothing is kept.
  async putStream(
    input: Readable | AsyncIterable<Buffer>,
    expect?: { readonly digest?: string; readonly size?: number },
  ): Promise<BlobInfo> {
    const tmp = this.tmpPath();
    const hash = createHash('sha256');
    let size = 0;
    try {
      await pipeline(
        input,
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const c of chunks) {
            hash.update(c);
            size += c.length;
            if (expect?.size !== undefined && size > expect.size) {
              throw invalidBlob(
                `Blob ${expect.digest ?? ''} is larger than the ${expect.size} bytes it should be`,
              );
            }
            yield c;
          }
        },
        createWriteStream(tmp, { mode: 0o600 }),
      );
      const digest = `sha256:${hash.digest('hex')}`;
      if (expect?.digest !== undefined && expect.digest !== digest) {
        throw invalidBlob(
          `Blob ${expect.digest} failed verification: digest mismatch (got ${digest})`,
        );
      }
      if (expect?.size !== undefined && expect.size !== size) {
        throw invalidBlob(`Blob ${digest} is ${size} bytes, not ${expect.size}`);
      }
      if (await this.has(digest)) await unlink(tmp);
      else await rename(tmp, this.path(digest));
      return { digest, size };
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }

  async remove(digest: string): Promise<void> {
    await rm(this.path(digest), { force: true });
    await rm(this.partialPath(digest), { force: true });
  }

  // Every stored digest, for garbage collection.
  async list(): Promise<string[]> {
    return (await readdir(join(this.dir, 'sha256')).catch(() => [] as string[]))
      .filter((n) => /^[0-9a-f]{64}$/.test(n))
      .map((n) => `sha256:${n}`);
  }

  async listPartial(): Promise<string[]> {
    return (await readdir(join(this.dir, 'partial')).catch(() => [] as string[]))
      .filter((n) => /^[0-9a-f]{64}$/.test(n))
      .map((n) => `sha256:${n}`);
  }

  private tmpPath(): string {
    return join(this.dir, 'tmp', randomBytes(8).toString('hex'));
  }
}

async function writeAll(path: string, bytes: Buffer): Promise<void> {
  const ws = createWriteStream(path, { mode: 0o600 });
  await pipeline(
    (async function* () {
      yield bytes;
    })(),
    ws,
  );
}

export async function hashFile(path: string): Promise<BlobInfo> {
  const hash = createHash('sha256');
  let size = 0;
  await pipeline(createReadStream(path), async function (chunks: AsyncIterable<Buffer>) {
    for await (const c of chunks) {
      hash.update(c);
      size += c.length;
    }
  });
  return { digest: `sha256:${hash.digest('hex')}`, size };
}
