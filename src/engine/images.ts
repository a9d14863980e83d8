// Images as the engine sees them: blobs in the content store, layers unpacked once and
// shared, a read-only root per image, records and tags in the store. Pull and push live in
// image-transfer.ts, archives in image-archives.ts; this module owns what an image is.
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { ContentStore } from '../images/content-store.ts';
import { makeBusyboxImage } from '../images/busybox-image.ts';
import { toImageConfig } from '../images/image-config.ts';
import { ImageRoots } from '../images/image-root.ts';
import { LayerStore } from '../images/layer-store.ts';
import { familiarReference, parseImageRef, parseReference } from '../images/reference.ts';
import type { Reference } from '../images/reference.ts';
import { MEDIA_TYPES, type OciImageConfig } from '../images/registry.ts';
import { ImageFiles } from '../images/rootfs.ts';
import type { Store } from '../store/index.ts';
import type { ImageBlob, ImageMeta, ImageRecord } from '../types/domain.ts';
import { BerthError, invalid } from '../util/errors.ts';
import type { EventBus } from './events.ts';

export interface ProgressMessage {
  readonly id?: string;
  readonly status?: string;
  readonly progressDetail?: { readonly current?: number; readonly total?: number };
  readonly error?: string;
  readonly errorDetail?: { readonly code: string; readonly message: string };
}
export type ProgressFn = (m: ProgressMessage) => void;

// A new image whose blobs are all in the content store.
export interface NewImage {
  readonly configDigest: string;
  readonly manifest: ImageBlob;
  readonly layers: readonly (ImageBlob & { readonly diffId: string })[];
}

export interface RegisterOptions {
  readonly names: readonly { readonly repo: string; readonly tag: string }[];
  readonly digests?: readonly { readonly repo: string; readonly digest: string }[];
  // The event for the image: pull, load, import, tag.
  readonly action: string;
  readonly signal?: AbortSignal;
  // Per layer: unpack progress in compressed bytes, and when it is done.
  readonly onExtract?: (index: number, bytes: number) => void;
  readonly onLayerDone?: (index: number, existed: boolean) => void;
}

export type DeleteResult = { Untagged: string } | { Deleted: string };

// The repository part of a name as it is stored and shown: docker's familiar form.
export function familiarRepo(r: Reference): string {
  return familiarReference({ ...r, tag: undefined, digest: undefined });
}

// "name[:tag]" of a name a user gave, for a tag to be made; refuses digests.
export function parseTagName(s: string, field = 'image'): { repo: string; tag: string } {
  const r = parseReference(s, field);
  if (r.digest !== undefined) throw invalid(field, `"${s}": a tag cannot name a digest`);
  return { repo: familiarRepo(r), tag: r.tag ?? 'latest' };
}

const UNPACK_CONCURRENCY = 2;

export const LAYER_MEDIA_TYPES = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
} as const;

export async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async (): Promise<void> => {
    while (failed === undefined && next < items.length) {
      const i = next++;
      try {
        await fn(items[i] as T, i);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed;
}

export class ImageService {
  readonly content: ContentStore;
  readonly layers: LayerStore;
  readonly roots: ImageRoots;
  private readonly dir: string;
  private readonly store: Store;
  private readonly legacy: ImageFiles;
  private readonly events: EventBus;
  private usedBy: (imageId: string) => string[] = () => [];
  // Blobs an operation wrote and has not yet tied to an image.
  private readonly blobPins = new Map<string, number>();
  // Operations that write blobs before they can name them (a load learns its digests as
  // it reads): while any runs, unreferenced blobs are left for a later collection.
  private writers = 0;

  constructor(store: Store, dir: string, events: EventBus) {
    this.store = store;
    this.dir = dir;
    this.events = events;
    this.content = new ContentStore(join(dir, 'blobs'));
    this.layers = new LayerStore(dir, store.images);
    this.roots = new ImageRoots(dir);
    this.legacy = new ImageFiles(dir);
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const e of await readdir(this.dir)) {
      if (e.startsWith('.tmp-')) await rm(join(this.dir, e), { recursive: true, force: true });
    }
    await this.content.init();
    await this.layers.init();
    await this.roots.init();
  }

  // Containers using an image, running or not: such an image is not deleted.
  setUsedBy(fn: (imageId: string) => string[]): void {
    this.usedBy = fn;
  }

  // Held by an operation that may store blobs; call the result when it is done.
  holdBlobs(): () => void {
    this.writers++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.writers--;
    };
  }

  pinBlob(digest: string): void {
    this.blobPins.set(digest, (this.blobPins.get(digest) ?? 0) + 1);
  }

  unpinBlob(digest: string): void {
    const c = (this.blobPins.get(digest) ?? 1) - 1;
    if (c <= 0) this.blobPins.delete(digest);
    else this.blobPins.set(digest, c);
  }

  byId(id: string): ImageRecord | undefined {
    return this.store.images.byId(id);
  }

  layerByDiffId(diffId: string): { n: number; size: number } | undefined {
    return this.store.images.layerByDiffId(diffId);
  }

  // Unpacked bytes of each layer, bottom first.
  layerSizes(id: string): number[] {
    return this.store.images.layersOf(id).map((l) => l.size);
  }

  recordPush(repo: string, digest: string, id: string): void {
    this.store.images.addDigest(repo, digest, id);
  }

  // The image's root, mounted: a read-only overlay of its layers (or, for an image from
  // before layered images, its one directory).
  async root(id: string): Promise<string> {
    if (this.roots.isMounted(id)) return this.roots.path(id);
    const img = this.store.images.byId(id);
    if (!img) throw new BerthError('IMAGE_NOT_FOUND', `No such image: ${id}`);
    if (!img.meta) return this.legacy.rootfs(id);
    return this.roots.mount(
      id,
      this.store.images.layersOf(id).map((l) => this.layers.relPath(l.n)),
    );
  }

  // Every new data root gets the built-in busybox image, so a fresh host can run a
  // container with no registry.
  async seedBusybox(busyboxPath: string): Promise<void> {
    if (this.store.images.byTag('busybox', 'latest')) return;
    const release = this.holdBlobs();
    try {
      await this.seedHeld(busyboxPath);
    } finally {
      release();
    }
  }

  private async seedHeld(busyboxPath: string): Promise<void> {
    const bb = await makeBusyboxImage(this.content, busyboxPath, this.dir);
    this.pinBlob(bb.layer.digest);
    try {
      const layer = { ...bb.layer, mediaType: LAYER_MEDIA_TYPES.none, diffId: bb.layer.digest };
      const img = await this.storeConfigAndManifest(bb.config, [layer]);
      await this.register(img, { names: [{ repo: 'busybox', tag: 'latest' }], action: 'tag' });
    } finally {
      this.unpinBlob(bb.layer.digest);
    }
  }

  // `import`: a root filesystem tarball (plain or compressed) becomes a one-layer image.
  async importRootfs(input: Readable, ref: string): Promise<ImageRecord> {
    const name = parseTagName(ref, 'repo');
    const release = this.holdBlobs();
    try {
      return await this.importLayer(input, name);
    } catch (e) {
      // A failed import leaves nothing: the blob it stored and the layer it unpacked go.
      release();
      await this.collect().catch(() => undefined);
      if (e instanceof BerthError && e.code !== 'IMAGE_INVALID') throw e;
      throw new BerthError(
        'IMAGE_INVALID',
        `Cannot import root filesystem: ${(e as Error).message}`,
      );
    } finally {
      release();
    }
  }

  private async importLayer(
    input: Readable,
    name: { repo: string; tag: string },
  ): Promise<ImageRecord> {
    const blob = await this.content.putStream(input);
    this.pinBlob(blob.digest);
    try {
      // The diff id is known once unpacked: unpack first, under the diff id the unpacker
      // reports, then write the config that names it.
      const probe = await this.layers.ensureUnknown(() => this.content.open(blob.digest));
      try {
        const mediaType = LAYER_MEDIA_TYPES[probe.compression];
        // Same bytes, same image: the time is when this host first saw the layer.
        const now =
          this.store.images.layerByDiffId(probe.diffId)?.createdAt ?? new Date().toISOString();
        const config = Buffer.from(
          JSON.stringify({
            created: now,
            architecture: hostArch(),
            os: 'linux',
            config: {},
            rootfs: { type: 'layers', diff_ids: [probe.diffId] },
            history: [
              { created: now, created_by: 'berth import', comment: 'Imported from tarball' },
            ],
          }),
        );
        const img = await this.storeConfigAndManifest(config, [
          { ...blob, mediaType, diffId: probe.diffId },
        ]);
        return await this.register(img, { names: [name], action: 'import' });
      } finally {
        this.layers.unpin(probe.n);
      }
    } finally {
      this.unpinBlob(blob.digest);
    }
  }

  // Writes the config and an OCI manifest for it (for images that came without one).
  async storeConfigAndManifest(
    configBytes: Buffer,
    layers: readonly (ImageBlob & { readonly diffId: string })[],
  ): Promise<NewImage> {
    const cfg = await this.content.putBytes(configBytes);
    const manifestBytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociManifest,
        config: { mediaType: MEDIA_TYPES.ociConfig, digest: cfg.digest, size: cfg.size },
        layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
      }),
    );
    const m = await this.content.putBytes(manifestBytes);
    return {
      configDigest: cfg.digest,
      manifest: { ...m, mediaType: MEDIA_TYPES.ociManifest },
      layers,
    };
  }

  async readConfig(configDigest: string): Promise<OciImageConfig> {
    let cfg: OciImageConfig;
    try {
      cfg = JSON.parse(
        (await this.content.readBytes(configDigest)).toString('utf8'),
      ) as OciImageConfig;
    } catch (e) {
      throw new BerthError(
        'IMAGE_INVALID',
        `Image config ${configDigest} is not valid JSON: ${(e as Error).message}`,
      );
    }
    if (typeof cfg !== 'object' || cfg === null || !Array.isArray(cfg.rootfs?.diff_ids)) {
      throw new BerthError('IMAGE_INVALID', `Image config ${configDigest} has no rootfs.diff_ids`);
    }
    return cfg;
  }

  // Unpacks what is not yet unpacked and records the image with its names, in one
  // transaction with its events. Nothing is recorded unless every layer unpacked and
  // matched its diff id.
  async register(img: NewImage, opts: RegisterOptions): Promise<ImageRecord> {
    const oci = await this.readConfig(img.configDigest);
    const diffIds = oci.rootfs.diff_ids;
    if (diffIds.length !== img.layers.length) {
      throw new BerthError(
        'IMAGE_INVALID',
        `Image config lists ${diffIds.length} layers, the manifest ${img.layers.length}`,
      );
    }
    const id = img.configDigest.slice('sha256:'.length);
    const ns: number[] = new Array<number>(img.layers.length);
    let size = 0;
    try {
      await eachLimited(img.layers, UNPACK_CONCURRENCY, async (l, i) => {
        const got = await this.layers.ensure(
          diffIds[i] as string,
          () => this.content.open(l.digest),
          {
            ...(opts.signal ? { signal: opts.signal } : {}),
            onProgress: (b) => opts.onExtract?.(i, b),
          },
        );
        ns[i] = got.n;
        size += got.size;
        opts.onLayerDone?.(i, got.existed);
      });
      const meta: ImageMeta = {
        manifest: img.manifest,
        layers: img.layers.map((l, i) => ({ ...l, diffId: diffIds[i] as string })),
        os: oci.os ?? 'linux',
        architecture: oci.architecture ?? hostArch(),
        ...(oci.variant ? { variant: oci.variant } : {}),
      };
      this.store.tx(() => {
        const added = this.store.images.add(
          {
            id,
            createdAt: validTime(oci.created) ?? new Date().toISOString(),
            size,
            config: toImageConfig(oci),
            meta,
          },
          ns,
        );
        for (const n of opts.names) this.store.images.tag(n.repo, n.tag, id);
        for (const d of opts.digests ?? []) this.store.images.addDigest(d.repo, d.digest, id);
        const names = opts.names.map((n) => `${n.repo}:${n.tag}`);
        if (added || names.length === 0) {
          this.events.append({
            type: 'image',
            action: opts.action,
            actorId: `sha256:${id}`,
            attributes: names[0] ? { name: names[0] } : {},
          });
        }
        for (const name of added ? names.slice(1) : names) {
          this.events.append({
            type: 'image',
            action: added ? 'tag' : opts.action,
            actorId: `sha256:${id}`,
            attributes: { name },
          });
        }
      });
    } finally {
      for (const n of ns) if (n !== undefined) this.layers.unpin(n);
    }
    const rec = this.store.images.byId(id);
    if (!rec) throw new BerthError('INTERNAL', `Image ${id} vanished after it was recorded`);
    return rec;
  }

  // A name matches first (local images such as the built-in busybox are found by their
  // own name), then an id or unique id prefix.
  resolve(ref: string): ImageRecord {
    return this.lookup(ref).img;
  }

  private lookup(ref: string): { img: ImageRecord; by: 'id' | 'name' | 'digest' } {
    const hex = ref.startsWith('sha256:') ? ref.slice(7) : ref;
    if (/^[0-9a-f]{64}$/.test(hex)) {
      const img = this.store.images.byId(hex);
      if (img) return { img, by: 'id' };
      throw new BerthError('IMAGE_NOT_FOUND', `No such image: ${ref}`, { field: 'image' });
    }
    let r: Reference | undefined;
    try {
      r = parseReference(ref);
    } catch {
      r = undefined;
    }
    if (r) {
      const repo = familiarRepo(r);
      const img =
        r.digest !== undefined
          ? this.store.images.byDigest(repo, r.digest)
          : this.store.images.byTag(repo, r.tag ?? 'latest');
      if (img) return { img, by: r.digest !== undefined ? 'digest' : 'name' };
    } else {
      // A name from before docker's normalisation was applied (still valid locally).
      try {
        const p = parseImageRef(ref);
        const img = this.store.images.byTag(p.repo, p.tag);
        if (img) return { img, by: 'name' };
      } catch {
        // not a name either
      }
    }
    if (/^[0-9a-f]{4,63}$/.test(hex)) {
      const byId = this.store.images.byIdPrefix(hex);
      if (byId.length > 1) {
        throw new BerthError('IMAGE_AMBIGUOUS', `Image id prefix "${hex}" matches several images`, {
          field: 'image',
        });
      }
      if (byId[0]) return { img: byId[0], by: 'id' };
    }
    if (!r) throw invalid('image', `"${ref}" is neither an image name nor an id`);
    throw new BerthError('IMAGE_NOT_FOUND', `No such image: ${familiarReference(r)}`, {
      field: 'image',
    });
  }

  list(): ImageRecord[] {
    return this.store.images.list();
  }

  tagsOf(id: string): string[] {
    return this.store.images.tagsOf(id).map((t) => `${t.repo}:${t.tag}`);
  }

  digestsOf(id: string): string[] {
    return this.store.images.digestsOf(id).map((d) => `${d.repo}@${d.digest}`);
  }

  tag(source: string, target: string): void {
    const img = this.resolve(source);
    const t = parseTagName(target, 'target');
    this.store.tx(() => {
      this.store.images.tag(t.repo, t.tag, img.id);
      this.events.append({
        type: 'image',
        action: 'tag',
        actorId: `sha256:${img.id}`,
        attributes: { name: `${t.repo}:${t.tag}` },
      });
    });
  }

  // docker rmi: a name untags; the image goes with its last name unless a container uses
  // it. An id removes the image, refused while it has several names unless forced.
  async remove(ref: string, force: boolean): Promise<DeleteResult[]> {
    const { img, by } = this.lookup(ref);
    const tags = this.store.images.tagsOf(img.id);
    const users = this.usedBy(img.id);
    const out: DeleteResult[] = [];
    let untag: { repo: string; tag: string }[];
    if (by === 'name') {
      const t = nameOfRef(ref);
      untag = tags.filter((x) => x.repo === t.repo && x.tag === t.tag);
    } else if (by === 'digest') {
      untag = [];
    } else {
      if (tags.length > 1 && !force) {
        throw new BerthError(
          'IMAGE_IN_USE',
          `Image ${img.id.slice(0, 12)} is referenced in multiple repositories (${tags
            .map((x) => `${x.repo}:${x.tag}`)
            .join(', ')}): remove it by name, or with force`,
        );
      }
      untag = tags;
    }
    const lastName = tags.length - untag.length === 0;
    if (lastName && users.length > 0 && !force) {
      throw new BerthError(
        'IMAGE_IN_USE',
        `Image ${by === 'id' ? img.id.slice(0, 12) : ref} is used by container ${users[0]?.slice(0, 12)}${
          users.length > 1 ? ` and ${users.length - 1} more` : ''
        }: remove the container first, or force to untag only`,
      );
    }
    const deleting = lastName && users.length === 0;
    this.store.tx(() => {
      for (const t of untag) {
        this.store.images.untag(t.repo, t.tag);
        out.push({ Untagged: `${t.repo}:${t.tag}` });
        this.events.append({
          type: 'image',
          action: 'untag',
          actorId: `sha256:${img.id}`,
          attributes: { name: `${t.repo}:${t.tag}` },
        });
      }
      if (deleting) {
        for (const d of this.store.images.digestsOf(img.id)) {
          out.push({ Untagged: `${d.repo}@${d.digest}` });
        }
        this.store.images.remove(img.id);
        out.push({ Deleted: `sha256:${img.id}` });
        this.events.append({
          type: 'image',
          action: 'delete',
          actorId: `sha256:${img.id}`,
          attributes: {},
        });
      }
    });
    if (deleting) {
      if (img.meta) await this.roots.remove(img.id);
      else await this.legacy.remove(img.id);
      await this.collect();
    }
    return out;
  }

  // image prune: images with no name (with all: every image) that no container uses.
  async prune(all: boolean): Promise<{ deleted: DeleteResult[]; reclaimed: number }> {
    const deleted: DeleteResult[] = [];
    const layerBytes = (): number => this.store.images.allLayers().reduce((a, l) => a + l.size, 0);
    const before = layerBytes();
    const seen = new Set<string>();
    for (const img of this.store.images.list()) {
      if (seen.has(img.id)) continue;
      seen.add(img.id);
      if (!all && img.repo !== '<none>') continue;
      if (this.usedBy(img.id).length > 0) continue;
      deleted.push(...(await this.remove(img.id, true)));
    }
    const reclaimed = before - layerBytes();
    this.events.append({
      type: 'image',
      action: 'prune',
      actorId: '',
      attributes: { reclaimed: String(reclaimed) },
    });
    return { deleted, reclaimed };
  }

  // Layers and blobs no image holds and no operation in flight holds.
  async collect(): Promise<void> {
    await this.layers.collect();
    if (this.writers > 0) return;
    const keep = new Set<string>(this.blobPins.keys());
    for (const { id, meta } of this.store.images.allMeta()) {
      keep.add(`sha256:${id}`);
      if (!meta) continue;
      keep.add(meta.manifest.digest);
      for (const l of meta.layers) keep.add(l.digest);
    }
    for (const d of await this.content.list()) {
      if (!keep.has(d)) await this.content.remove(d);
    }
  }
}

function validTime(s: string | undefined): string | undefined {
  if (s === undefined) return undefined;
  const t = Date.parse(s);
  return Number.isFinite(t) ? new Date(t).toISOString() : undefined;
}

function hostArch(): string {
  return process.arch === 'x64' ? 'amd64' : process.arch === 'ia32' ? '386' : process.arch;
}

function nameOfRef(ref: string): { repo: string; tag: string } {
  try {
    const r = parseReference(ref);
    return { repo: familiarRepo(r), tag: r.tag ?? '' };
  } catch {
    return parseImageRef(ref);
  }
}
