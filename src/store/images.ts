import type { Database } from './db.ts';
import type { ImageConfig, ImageRecord } from '../types/domain.ts';

interface Row {
  id: string;
  created_at: string;
  size: number;
  config: string;
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
  };
}

const SELECT = `SELECT i.id, i.created_at, i.size, i.config, t.repo, t.tag
  FROM images i LEFT JOIN image_tags t ON t.image_id = i.id`;

export class ImageRepo {
  private readonly db: Database;
  constructor(db: Database) {
    this.db = db;
  }

  // Adds the image if new and points repo:tag at it, moving the tag off any older image.
  put(img: Omit<ImageRecord, 'repo' | 'tag'>, repo: string, tag: string): void {
    this.db.tx(() => {
      this.db.db
        .prepare(
          `INSERT INTO images (id, created_at, size, config) VALUES (?, ?, ?, ?)
           ON CONFLICT(id) DO NOTHING`,
        )
        .run(img.id, img.createdAt, img.size, JSON.stringify(img.config));
      this.db.db
        .prepare(
          `INSERT INTO image_tags (repo, tag, image_id) VALUES (?, ?, ?)
           ON CONFLICT(repo, tag) DO UPDATE SET image_id = excluded.image_id`,
        )
        .run(repo, tag, img.id);
    });
  }

  byTag(repo: string, tag: string): ImageRecord | undefined {
    const r = this.db.db.prepare(`${SELECT} WHERE t.repo = ? AND t.tag = ?`).get(repo, tag) as
      Row | undefined;
    return r && fromRow(r);
  }

  byIdPrefix(prefix: string): ImageRecord[] {
    const rows = this.db.db
      .prepare(`${SELECT} WHERE i.id >= ? AND i.id < ? LIMIT 2`)
      .all(prefix, `${prefix}g`) as unknown as Row[];
    return rows.map(fromRow);
  }

  list(): ImageRecord[] {
    return (
      this.db.db.prepare(`${SELECT} ORDER BY i.created_at DESC`).all() as unknown as Row[]
    ).map(fromRow);
  }
}
