import type { Database } from './db.ts';
import type { ImageConfig, ImageMeta, ImageRecord } from '../types/domain.ts';

interface Row {
  id: string;
  created_at: string;
  size: number;
  config: string;
  meta: string;
  repo: string | null;
  tag: string | null;
}

function fromRow(r: Row): ImageRecord {
  return {
    id: r.id,
    repo: r.repo ?? '<none>',
    tag: r.tag ?? '<none>',
    createdAt: r.created_at,
    size: r.size,
    config: JSON.parse(r.config) as ImageConfig,
    ...(r.meta === '' ? {} : { meta: JSON.parse(r.meta) as ImageMeta }),
  };
}

export interface LayerRow {
  readonly n: number;
  readonly diffId: string;
  readonly size: number;
  readonly createdAt: string;
}

interface LayerDbRow {
  n: number;
  diff_id: string;
  size: number;
  created_at: string;
}

const layerOf = (r: LayerDbRow): LayerRow => ({
  n: r.n,
  diffId: r.diff_id,
  size: r.size,
  createdAt: r.created_at,
});

const SELECT = `SELECT i.id, i.created_at, i.size, i.config, i.meta, t.repo, t.tag
  FROM images i LEFT JOIN image_tags t ON t.image_id = i.id`;

export class ImageRepo {
  private readonly db: Database;
  constructor(db: Database) {
    this.db = db;
  }

  // Adds the image if new and points repo:tag at it, moving the tag off any older image.
  put(img: Omit<ImageRecord, 'repo' | 'tag'>, repo: string, tag: string): void {
    this.db.tx(() => {
      this.add(img, []);
      this.tag(repo, tag, img.id);
    });
  }

  // Adds an image with its layers (bottom first) unless it is there already.
  add(img: Omit<ImageRecord, 'repo' | 'tag'>, layers: readonly number[]): boolean {
    return this.db.tx(() => {
      const r = this.db.db
        .prepare(
          `INSERT INTO images (id, created_at, size, config, meta) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT(id) DO NOTHING`,
        )
        .run(
          img.id,
          img.createdAt,
          img.size,
          JSON.stringify(img.config),
          img.meta ? JSON.stringify(img.meta) : '',
        );
      if (r.changes === 0) return false;
      const ins = this.db.db.prepare(
        'INSERT INTO image_layers (image_id, position, layer_n) VALUES (?, ?, ?)',
      );
      layers.forEach((n, i) => ins.run(img.id, i, n));
      return true;
    });
  }

  // Points repo:tag at the image; returns the image the tag left, if another.
  tag(repo: string, tag: string, imageId: string): string | undefined {
    const before = this.db.db
      .prepare('SELECT image_id FROM image_tags WHERE repo = ? AND tag = ?')
      .get(repo, tag) as { image_id: string } | undefined;
    this.db.db
      .prepare(
        `INSERT INTO image_tags (repo, tag, image_id) VALUES (?, ?, ?)
         ON CONFLICT(repo, tag) DO UPDATE SET image_id = excluded.image_id`,
      )
      .run(repo, tag, imageId);
    return before && before.image_id !== imageId ? before.image_id : undefined;
  }

  untag(repo: string, tag: string): boolean {
    return (
      this.db.db.prepare('DELETE FROM image_tags WHERE repo = ? AND tag = ?').run(repo, tag)
        .changes > 0
    );
  }

  addDigest(repo: string, digest: string, imageId: string): void {
    this.db.db
      .prepare(
        `INSERT INTO image_digests (repo, digest, image_id) VALUES (?, ?, ?)
         ON CONFLICT(repo, digest) DO UPDATE SET image_id = excluded.image_id`,
      )
      .run(repo, digest, imageId);
  }

  byTag(repo: string, tag: string): ImageRecord | undefined {
    const r = this.db.db.prepare(`${SELECT} WHERE t.repo = ? AND t.tag = ?`).get(repo, tag) as
      Row | undefined;
    return r && fromRow(r);
  }

  byDigest(repo: string, digest: string): ImageRecord | undefined {
    const r = this.db.db
      .prepare(
        `SELECT i.id, i.created_at, i.size, i.config, i.meta, NULL AS repo, NULL AS tag
         FROM images i JOIN image_digests d ON d.image_id = i.id
         WHERE d.repo = ? AND d.digest = ?`,
      )
      .get(repo, digest) as Row | undefined;
    return r && fromRow(r);
  }

  byId(id: string): ImageRecord | undefined {
    const r = this.db.db.prepare(`${SELECT} WHERE i.id = ? LIMIT 1`).get(id) as Row | undefined;
    return r && fromRow(r);
  }

  byIdPrefix(prefix: string): ImageRecord[] {
    const rows = this.db.db
      .prepare(`SELECT DISTINCT i.id FROM images i WHERE i.id >= ? AND i.id < ? LIMIT 2`)
      .all(prefix, `${prefix}g`) as unknown as { id: string }[];
    return rows.map((r) => this.byId(r.id)).filter((i) => i !== undefined);
  }

  // One row per tag, and one for an image with none, newest first.
  list(): ImageRecord[] {
    return (
      this.db.db
        .prepare(`${SELECT} ORDER BY i.created_at DESC, i.id, t.repo, t.tag`)
        .all() as unknown as Row[]
    ).map(fromRow);
  }

  tagsOf(id: string): { repo: string; tag: string }[] {
    return this.db.db
      .prepare('SELECT repo, tag FROM image_tags WHERE image_id = ? ORDER BY repo, tag')
      .all(id) as unknown as { repo: string; tag: string }[];
  }

  digestsOf(id: string): { repo: string; digest: string }[] {
    return this.db.db
      .prepare('SELECT repo, digest FROM image_digests WHERE image_id = ? ORDER BY repo, digest')
      .all(id) as unknown as { repo: string; digest: string }[];
  }

  remove(id: string): void {
    this.db.db.prepare('DELETE FROM images WHERE id = ?').run(id);
  }

  // ---- layers ----

  layerByDiffId(diffId: string): LayerRow | undefined {
    const r = this.db.db
      .prepare('SELECT n, diff_id, size, created_at FROM layers WHERE diff_id = ?')
      .get(diffId) as LayerDbRow | undefined;
    return r && layerOf(r);
  }

  addLayer(diffId: string, size: number): number {
    const r = this.db.db
      .prepare('INSERT INTO layers (diff_id, size, created_at) VALUES (?, ?, ?)')
      .run(diffId, size, new Date().toISOString());
    return Number(r.lastInsertRowid);
  }

  removeLayer(n: number): void {
    this.db.db.prepare('DELETE FROM layers WHERE n = ?').run(n);
  }

  allLayers(): LayerRow[] {
    return (
      this.db.db
        .prepare('SELECT n, diff_id, size, created_at FROM layers')
        .all() as unknown as LayerDbRow[]
    ).map(layerOf);
  }

  // Bottom first.
  layersOf(id: string): LayerRow[] {
    return (
      this.db.db
        .prepare(
          `SELECT l.n, l.diff_id, l.size, l.created_at FROM image_layers il JOIN layers l ON l.n = il.layer_n
           WHERE il.image_id = ? ORDER BY il.position`,
        )
        .all(id) as unknown as LayerDbRow[]
    ).map(layerOf);
  }

  unreferencedLayers(): LayerRow[] {
    return (
      this.db.db
        .prepare(
          `SELECT n, diff_id, size, created_at FROM layers
           WHERE n NOT IN (SELECT layer_n FROM image_layers)`,
        )
        .all() as unknown as LayerDbRow[]
    ).map(layerOf);
  }

  // Every image id with its meta, for the blob collector.
  allMeta(): { id: string; meta: ImageMeta | undefined }[] {
    return (
      this.db.db.prepare('SELECT id, meta FROM images').all() as unknown as {
        id: string;
        meta: string;
      }[]
    ).map((r) => ({
      id: r.id,
      meta: r.meta === '' ? undefined : (JSON.parse(r.meta) as ImageMeta),
    }));
  }
}
