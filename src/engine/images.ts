// Images as the engine sees them: files from images/, records in the store.
import type { Readable } from 'node:stream';
import type { ImageFiles } from '../images/rootfs.ts';
import { parseImageRef } from '../images/reference.ts';
import type { Store } from '../store/index.ts';
import type { ImageConfig, ImageRecord } from '../types/domain.ts';
import { BerthError } from '../util/errors.ts';
import type { EventBus } from './events.ts';

const EMPTY_CONFIG: ImageConfig = {
  env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
  cmd: [],
  entrypoint: [],
  workdir: '/',
  user: '',
  labels: {},
  stopSignal: 'SIGTERM',
};

export class ImageService {
  private readonly store: Store;
  private readonly files: ImageFiles;
  private readonly events: EventBus;

  constructor(store: Store, files: ImageFiles, events: EventBus) {
    this.store = store;
    this.files = files;
    this.events = events;
  }

  rootfs(id: string): string {
    return this.files.rootfs(id);
  }

  // Every new data root gets the built-in busybox image, so a fresh host can run a
  // container with no registry.
  async seedBusybox(busyboxPath: string): Promise<void> {
    await this.files.sweepTemp();
    if (this.store.images.byTag('busybox', 'latest')) return;
    const img = await this.files.createBusybox(busyboxPath);
    this.store.tx(() => {
      this.store.images.put(
        { id: img.id, createdAt: new Date().toISOString(), size: img.size, config: img.config },
        'busybox',
        'latest',
      );
      this.events.append({
        type: 'image',
        action: 'tag',
        actorId: img.id,
        attributes: { name: 'busybox:latest' },
      });
    });
  }

  async importRootfs(input: Readable, ref: string): Promise<ImageRecord> {
    const { repo, tag } = parseImageRef(ref, 'repo');
    const img = await this.files.importTar(input);
    this.store.tx(() => {
      this.store.images.put(
        { id: img.id, createdAt: new Date().toISOString(), size: img.size, config: EMPTY_CONFIG },
        repo,
        tag,
      );
      this.events.append({
        type: 'image',
        action: 'import',
        actorId: img.id,
        attributes: { name: `${repo}:${tag}` },
      });
    });
    return this.resolve(`${repo}:${tag}`);
  }

  // A name matches first (local images such as the built-in busybox are found by their
  // own name), then an id or unique id prefix.
  resolve(ref: string): ImageRecord {
    const hex = ref.startsWith('sha256:') ? ref.slice(7) : ref;
    if (/^[0-9a-f]{4,64}$/.test(hex)) {
      const byId = this.store.images.byIdPrefix(hex);
      if (byId.length === 1 && byId[0]) return byId[0];
    }
    const parsed = parseImageRef(ref);
    const img = this.store.images.byTag(parsed.repo, parsed.tag);
    if (!img)
      throw new BerthError('IMAGE_NOT_FOUND', `No such image: ${parsed.repo}:${parsed.tag}`, {
        field: 'image',
      });
    return img;
  }

  list(): ImageRecord[] {
    return this.store.images.list();
  }
}
