// Unpacked layers: `<images>/layers/<n>`, one directory per diff id, unpacked once and
// shared read-only by every image that lists it (overlayfs lower dirs are independent
// directories, so a layer does not depend on its parent the way graph drivers' did and is
// shared across images whatever sits below it). The number is the store's row id: short
// names keep a stack of many layers inside the one page overlayfs takes its options in.
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { newId } from '../util/ids.ts';
import { unpackLayer, type LayerStats } from './unpack.ts';

export interface LayerRow {
  readonly n: number;
  readonly diffId: string;
  readonly size: number;
  readonly createdAt: string;
}

// The store's record of layers (store/images.ts).
export interface LayerIndex {
  layerByDiffId(diffId: string): LayerRow | undefined;
  addLayer(diffId: string, size: number): number;
  removeLayer(n: number): void;
  allLayers(): LayerRow[];
  unreferencedLayers(): LayerRow[];
}

export interface EnsureLayerOptions {
  readonly signal?: AbortSignal;
  // Compressed bytes read so far.
  readonly onProgress?: (bytes: number) => void;
}

export interface EnsuredLayer {
  readonly n: number;
  readonly size: number;
  // It was there already: nothing was unpacked.
  readonly existed: boolean;
}

export class LayerStore {
  readonly dir: string;
  private readonly repo: LayerIndex;
  private readonly inFlight = new Map<string, Promise<EnsuredLayer>>();
  // Layers an operation made or found and has not yet tied to an image: the collector
  // leaves them alone.
  private readonly pins = new Map<number, number>();

  constructor(imagesDir: string, repo: LayerIndex) {
    this.dir = join(imagesDir, 'layers');
    this.repo = repo;
  }

  path(n: number): string {
    return join(this.dir, String(n));
  }

  // Relative to the images directory, where overlay mounts are made from.
  relPath(n: number): string {
    return `layers/${n}`;
  }

  // After a crash: unpacks cut short go; a row whose directory is missing goes (an image
  // is only recorded after all its layers are in place, so no image lists it); a directory
  // no row names goes.
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const rows = new Map(this.repo.allLayers().map((l) => [String(l.n), l]));
    for (const name of await readdir(this.dir)) {
      if (!rows.has(name)) await rm(join(this.dir, name), { recursive: true, force: true });
    }
    for (const [name, l] of rows) {
      if (!(await stat(join(this.dir, name)).catch(() => undefined))) {
        this.repo.removeLayer(l.n);
      }
    }
  }

  pin(n: number): void {
    this.pins.set(n, (this.pins.get(n) ?? 0) + 1);
  }

  unpin(n: number): void {
    const c = (this.pins.get(n) ?? 1) - 1;
    if (c <= 0) this.pins.delete(n);
    else this.pins.set(n, c);
  }

  // The layer with this diff id, unpacked from `open()` if it is not here yet. Calls for
  // one diff id share one unpack. The result is pinned: unpin once an image holds it.
  async ensure(
    diffId: string,
    open: () => Readable,
    opts: EnsureLayerOptions = {},
  ): Promise<EnsuredLayer> {
    const have = this.repo.layerByDiffId(diffId);
    if (have) {
      this.pin(have.n);
      return { n: have.n, size: have.size, existed: true };
    }
    let p = this.inFlight.get(diffId);
    if (!p) {
      p = this.unpack(diffId, open, opts);
      this.inFlight.set(diffId, p);
      void p.then(
        () => this.inFlight.delete(diffId),
        () => this.inFlight.delete(diffId),
      );
      const r = await p;
      this.pin(r.n);
      return r;
    }
    const r = await p;
    this.pin(r.n);
    return { ...r, existed: true };
  }

  // A layer whose diff id is only known once it is read (an import): unpacked, then kept
  // under the diff id it turned out to have, or dropped for the one already there.
  async ensureUnknown(
    open: () => Readable,
  ): Promise<EnsuredLayer & { diffId: string; compression: LayerStats['compression'] }> {
    const tmp = join(this.dir, `.tmp-${newId().slice(0, 16)}`);
    await mkdir(tmp, { mode: 0o755 });
    try {
      const stats = await unpackLayer(open(), tmp);
      const extra = { diffId: stats.diffId, compression: stats.compression };
      const have = this.repo.layerByDiffId(stats.diffId);
      if (have) {
        await rm(tmp, { recursive: true, force: true });
        this.pin(have.n);
        return { n: have.n, size: have.size, existed: true, ...extra };
      }
      const n = this.repo.addLayer(stats.diffId, stats.bytes);
      try {
        await rename(tmp, this.path(n));
      } catch (e) {
        this.repo.removeLayer(n);
        throw e;
      }
      this.pin(n);
      return { n, size: stats.bytes, existed: false, ...extra };
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  private async unpack(
    diffId: string,
    open: () => Readable,
    opts: EnsureLayerOptions,
  ): Promise<EnsuredLayer> {
    const tmp = join(this.dir, `.tmp-${newId().slice(0, 16)}`);
    await mkdir(tmp, { mode: 0o755 });
    let read = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        read += chunk.length;
        opts.onProgress?.(read);
        cb(null, chunk);
      },
    });
    let stats: LayerStats;
    try {
      const src = open();
      src.on('error', (e) => counter.destroy(e));
      stats = await unpackLayer(src.pipe(counter), tmp, {
        diffId,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      // The row first: a crash before the rename leaves a row with no directory, which
      // init() removes; the other order could leave a directory another row reuses.
      const n = this.repo.addLayer(diffId, stats.bytes);
      try {
        await rename(tmp, this.path(n));
      } catch (e) {
        this.repo.removeLayer(n);
        throw e;
      }
      return { n, size: stats.bytes, existed: false };
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  // Removes layers no image lists and no operation holds.
  async collect(): Promise<LayerRow[]> {
    const gone: LayerRow[] = [];
    for (const l of this.repo.unreferencedLayers()) {
      if (this.pins.has(l.n)) continue;
      this.repo.removeLayer(l.n);
      await rm(this.path(l.n), { recursive: true, force: true });
      gone.push(l);
    }
    return gone;
  }
}
