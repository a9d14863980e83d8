// docker load / docker save: image archives in and out of the store (the formats are in
// images/archive.ts).
import type { Readable, Writable } from 'node:stream';
import { readImageArchive, writeImageArchive, type SaveImage } from '../images/archive.ts';
import { parseReference } from '../images/reference.ts';
import { BerthError } from '../util/errors.ts';
import type { EventBus } from './events.ts';
import { familiarRepo, type ImageService, type ProgressFn } from './images.ts';

export class ImageArchives {
  private readonly images: ImageService;
  private readonly events: EventBus;

  constructor(images: ImageService, events: EventBus) {
    this.images = images;
    this.events = events;
  }

  async load(input: Readable, progress: ProgressFn, signal?: AbortSignal): Promise<string[]> {
    const release = this.images.holdBlobs();
    try {
      return await this.loadHeld(input, progress, signal);
    } catch (e) {
      // What a failed load stored and no image it registered holds, goes.
      release();
      await this.images.collect().catch(() => undefined);
      throw e;
    } finally {
      release();
    }
  }

  private async loadHeld(
    input: Readable,
    progress: ProgressFn,
    signal?: AbortSignal,
  ): Promise<string[]> {
    const found = await readImageArchive(input, this.images.content, signal ? { signal } : {});
    const pinned = found.flatMap((a) => [a.configDigest, ...a.layers.map((l) => l.digest)]);
    for (const d of pinned) this.images.pinBlob(d);
    const loaded: string[] = [];
    try {
      for (const a of found) {
        const names = a.repoTags.map((t) => {
          const r = parseReference(t, 'RepoTags');
          return { repo: familiarRepo(r), tag: r.tag ?? 'latest' };
        });
        const oci = await this.images.readConfig(a.configDigest);
        const layers = a.layers.map((l, i) => ({ ...l, diffId: oci.rootfs.diff_ids[i] ?? '' }));
        const img = a.manifest
          ? {
              configDigest: a.configDigest,
              manifest: {
                ...a.manifest,
                size: (await this.images.content.size(a.manifest.digest)) ?? 0,
              },
              layers,
            }
          : await this.images.storeConfigAndManifest(
              await this.images.content.readBytes(a.configDigest),
              layers,
            );
        const rec = await this.images.register(img, {
          names,
          action: 'load',
          ...(signal ? { signal } : {}),
        });
        if (names.length === 0) {
          progress({ status: `Loaded image ID: sha256:${rec.id}` });
          loaded.push(`sha256:${rec.id}`);
        }
        for (const n of names) {
          progress({ status: `Loaded image: ${n.repo}:${n.tag}` });
          loaded.push(`${n.repo}:${n.tag}`);
        }
      }
    } finally {
      for (const d of pinned) this.images.unpinBlob(d);
    }
    return loaded;
  }

  // Resolves every name first, so a bad one fails before a byte is written.
  prepareSave(refs: readonly string[]): SaveImage[] {
    if (refs.length === 0) {
      throw new BerthError('INVALID_ARGUMENT', 'Name at least one image to save', {
        field: 'names',
      });
    }
    const byId = new Map<string, { img: ReturnType<ImageService['resolve']>; tags: string[] }>();
    for (const ref of refs) {
      const img = this.images.resolve(ref);
      if (!img.meta) {
        throw new BerthError(
          'IMAGE_INVALID',
          `Image ${ref} was stored before berth kept image blobs and cannot be saved; import it again`,
        );
      }
      const entry = byId.get(img.id) ?? { img, tags: [] };
      byId.set(img.id, entry);
      // docker: an image named by its id is saved with no name; by a name, with that name.
      const hex = ref.replace(/^sha256:/, '');
      if (!img.id.startsWith(hex)) {
        const r = parseReference(ref);
        if (r.tag !== undefined) entry.tags.push(`${familiarRepo(r)}:${r.tag}`);
      }
    }
    return [...byId.values()].map(({ img, tags }) => {
      const meta = img.meta;
      if (!meta) throw new BerthError('INTERNAL', 'image without blobs');
      return {
        configDigest: `sha256:${img.id}`,
        manifestDigest: meta.manifest.digest,
        manifestMediaType: meta.manifest.mediaType,
        layers: meta.layers.map((l) => ({
          digest: l.digest,
          size: l.size,
          mediaType: l.mediaType,
        })),
        repoTags: [...new Set(tags)],
      };
    });
  }

  async save(images: readonly SaveImage[], out: Writable, signal?: AbortSignal): Promise<void> {
    for (const i of images)
      for (const d of [i.configDigest, ...i.layers.map((l) => l.digest)]) this.images.pinBlob(d);
    try {
      await writeImageArchive(out, this.images.content, images, signal ? { signal } : {});
      for (const i of images) {
        this.events.append({
          type: 'image',
          action: 'save',
          actorId: i.configDigest,
          attributes: i.repoTags[0] ? { name: i.repoTags[0] } : {},
        });
      }
    } finally {
      for (const i of images)
        for (const d of [i.configDigest, ...i.layers.map((l) => l.digest)])
          this.images.unpinBlob(d);
    }
  }
}
