// Pull and push: an image between a registry and the local store, with docker's progress
// messages (one line per layer id) so the CLI can draw them as docker does.
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { formatPlatform } from '../images/platform.ts';
import { familiarReference, parseReference, type Reference } from '../images/reference.ts';
import { normalizeRegistry } from '../images/credentials.ts';
import { withCredentials, type RegistryClient, type ResolvedImage } from '../images/registry.ts';
import { BerthError } from '../util/errors.ts';
import type { EventBus } from './events.ts';
import {
  eachLimited,
  familiarRepo,
  LAYER_MEDIA_TYPES,
  type ImageService,
  type ProgressFn,
} from './images.ts';
import type { ImageRecord } from '../types/domain.ts';

// Docker's default: three layers at a time each way.
const DOWNLOAD_CONCURRENCY = 3;
const UPLOAD_CONCURRENCY = 3;
// Progress for one layer at most this often: enough for a smooth bar, not a flood.
const PROGRESS_EVERY_MS = 100;

const short = (digest: string): string => digest.replace(/^sha256:/, '').slice(0, 12);

function throttled(
  progress: ProgressFn,
): (id: string, status: string, cur: number, total: number) => void {
  const last = new Map<string, number>();
  return (id, status, cur, total) => {
    const now = Date.now();
    if (cur < total && now - (last.get(id) ?? 0) < PROGRESS_EVERY_MS) return;
    last.set(id, now);
    progress({ id, status, progressDetail: { current: cur, total } });
  };
}

// Credentials a client sent with one pull or push (Docker's X-Registry-Auth), used for it
// in place of the stored ones; only for the registry they name (any, when they name none).
export interface OperationCredentials {
  readonly serverAddress?: string;
  readonly username: string;
  readonly password: string;
}

export interface PullOptions {
  readonly platform?: string;
  readonly signal?: AbortSignal;
  readonly credentials?: OperationCredentials;
}

export interface PushOptions {
  readonly credentials?: OperationCredentials;
}

function withOperationCredentials<T>(
  r: Reference,
  creds: OperationCredentials | undefined,
  fn: () => Promise<T>,
): Promise<T> {
  if (!creds || creds.username === '') return fn();
  const server = creds.serverAddress ? normalizeRegistry(creds.serverAddress) : undefined;
  if (server !== undefined && server !== normalizeRegistry(r.registry)) return fn();
  return withCredentials(r.registry, { username: creds.username, password: creds.password }, fn);
}

export class ImageTransfer {
  private readonly images: ImageService;
  private readonly registry: RegistryClient;
  private readonly events: EventBus;

  constructor(images: ImageService, registry: RegistryClient, events: EventBus) {
    this.images = images;
    this.registry = registry;
    this.events = events;
  }

  async pull(ref: string, progress: ProgressFn, opts: PullOptions = {}): Promise<ImageRecord> {
    const r = parseReference(ref);
    return withOperationCredentials(r, opts.credentials, () => this.pullNow(r, progress, opts));
  }

  private async pullNow(
    r: Reference,
    progress: ProgressFn,
    opts: PullOptions,
  ): Promise<ImageRecord> {
    const name = familiarReference(r);
    const repo = familiarRepo(r);
    const signal = opts.signal ? { signal: opts.signal } : {};
    progress({ id: r.tag ?? r.digest ?? 'latest', status: `Pulling from ${r.repository}` });
    const resolved = await this.registry.resolve(r, opts.platform, signal);
    const id = resolved.configDigest.slice('sha256:'.length);
    const names = r.tag !== undefined ? [{ repo, tag: r.tag }] : [];
    const digests = [{ repo, digest: resolved.digest }];
    const pinned = [
      resolved.configDigest,
      resolved.manifestDigest,
      ...resolved.layers.map((l) => l.digest),
    ];
    for (const d of pinned) this.images.pinBlob(d);
    const release = this.images.holdBlobs();
    try {
      const existing = this.images.byId(id);
      await this.images.content.putBytes(resolved.configBytes, resolved.configDigest);
      await this.images.content.putBytes(resolved.manifestBytes, resolved.manifestDigest);
      if (!existing) await this.fetchLayers(r, resolved, progress, opts.signal);
      const img = await this.images.register(
        {
          configDigest: resolved.configDigest,
          manifest: {
            digest: resolved.manifestDigest,
            size: resolved.manifestBytes.length,
            mediaType: resolved.manifestMediaType,
          },
          layers: resolved.layers.map((l, i) => ({
            digest: l.digest,
            size: l.size,
            mediaType: l.mediaType ?? LAYER_MEDIA_TYPES.gzip,
            diffId: resolved.config.rootfs.diff_ids[i] ?? '',
          })),
        },
        {
          names,
          digests,
          action: 'pull',
          ...signal,
          onExtract: (i, bytes) => {
            const l = resolved.layers[i];
            if (l)
              progress({
                id: short(l.digest),
                status: 'Extracting',
                progressDetail: { current: bytes, total: l.size },
              });
          },
          onLayerDone: (i) => {
            const l = resolved.layers[i];
            if (l && !existing) progress({ id: short(l.digest), status: 'Pull complete' });
          },
        },
      );
      progress({ status: `Digest: ${resolved.digest}` });
      progress({
        status: existing
          ? `Status: Image is up to date for ${name}`
          : `Status: Downloaded newer image for ${name}`,
      });
      if (opts.platform !== undefined) {
        progress({ status: `Platform: ${formatPlatform(resolved.platform)}` });
      }
      return img;
    } finally {
      release();
      for (const d of pinned) this.images.unpinBlob(d);
    }
  }

  private async fetchLayers(
    r: Reference,
    resolved: ResolvedImage,
    progress: ProgressFn,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const layers = this.images.content;
    const diffIds = resolved.config.rootfs.diff_ids;
    const tick = throttled(progress);
    const todo: number[] = [];
    for (const [i, l] of resolved.layers.entries()) {
      // Unpacked and its blob kept (push and save need the blob the manifest names).
      const have =
        this.images.layerByDiffId(diffIds[i] ?? '') !== undefined && (await layers.has(l.digest));
      if (have) progress({ id: short(l.digest), status: 'Already exists' });
      else {
        progress({ id: short(l.digest), status: 'Pulling fs layer' });
        todo.push(i);
      }
    }
    for (const i of todo.slice(DOWNLOAD_CONCURRENCY)) {
      const l = resolved.layers[i];
      if (l) progress({ id: short(l.digest), status: 'Waiting' });
    }
    await eachLimited(todo, DOWNLOAD_CONCURRENCY, async (i) => {
      const l = resolved.layers[i];
      if (!l) return;
      const id = short(l.digest);
      if (!(await layers.has(l.digest))) {
        await this.registry.fetchBlob(r, l, layers.partialPath(l.digest), {
          ...(signal ? { signal } : {}),
          onProgress: (cur, total) => tick(id, 'Downloading', cur, total),
        });
        progress({ id, status: 'Verifying Checksum' });
        await layers.adoptVerifiedPartial(l.digest);
      }
      progress({ id, status: 'Download complete' });
    });
  }

  async push(
    ref: string,
    progress: ProgressFn,
    signal?: AbortSignal,
    opts: PushOptions = {},
  ): Promise<string> {
    const r = parseReference(ref);
    if (r.digest !== undefined) {
      throw new BerthError('INVALID_ARGUMENT', `Cannot push a digest reference: ${ref}`, {
        field: 'image',
      });
    }
    return withOperationCredentials(r, opts.credentials, () =>
      this.pushNow(ref, r, progress, signal),
    );
  }

  private async pushNow(
    ref: string,
    r: Reference,
    progress: ProgressFn,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    const img = this.images.resolve(ref);
    const meta = img.meta;
    if (!meta) {
      throw new BerthError(
        'IMAGE_INVALID',
        `Image ${ref} was stored before berth kept image blobs and cannot be pushed; save, load or import it again`,
      );
    }
    const tag = r.tag ?? 'latest';
    progress({ status: `The push refers to repository [${r.registry}/${r.repository}]` });
    const sig = signal ? { signal } : {};
    const tick = throttled(progress);
    const blobs = [...meta.layers].reverse();
    for (const l of blobs) progress({ id: short(l.digest), status: 'Preparing' });
    await eachLimited(blobs, UPLOAD_CONCURRENCY, async (l) => {
      const id = short(l.digest);
      const path = this.images.content.path(l.digest);
      const how = await this.registry.pushBlob(
        r,
        { digest: l.digest, size: l.size },
        (offset: number): Readable => createReadStream(path, { start: offset }),
        { ...sig, onProgress: (cur, total) => tick(id, 'Pushing', cur, total) },
      );
      progress({
        id,
        status:
          how === 'exists' ? 'Layer already exists' : how === 'mounted' ? 'Mounted' : 'Pushed',
      });
    });
    const configDigest = `sha256:${img.id}`;
    const configSize = (await this.images.content.size(configDigest)) ?? 0;
    await this.registry.pushBlob(
      r,
      { digest: configDigest, size: configSize },
      (offset: number): Readable =>
        createReadStream(this.images.content.path(configDigest), { start: offset }),
      sig,
    );
    const manifestBytes = await this.images.content.readBytes(meta.manifest.digest);
    const digest = await this.registry.pushManifest(
      r,
      tag,
      manifestBytes,
      meta.manifest.mediaType,
      sig,
    );
    this.images.recordPush(familiarRepo(r), digest, img.id);
    this.events.append({
      type: 'image',
      action: 'push',
      actorId: `sha256:${img.id}`,
      attributes: { name: `${familiarRepo(r)}:${tag}` },
    });
    progress({ status: `${tag}: digest: ${digest} size: ${manifestBytes.length}` });
    return digest;
  }
}
