// Logs as the engine sees them: where each container's files are, their retention after
// the container is gone, compression of rotated files, the host-wide cap, and the events
// each monitor records durably while it runs.
import {
  createReadStream,
  createWriteStream,
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
} from 'node:fs';
import { mkdir, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import {
  listLogFiles,
  LIVE_NAME,
  readJournal,
  readLog,
  type JournalOptions,
  type JournalSource,
  type ReadOptions,
} from '../logs/index.ts';
import type { ContainerConfig, LogConfig } from '../types/domain.ts';
import { errorMessage, invalid } from '../util/errors.ts';
import { parseSize } from '../util/size.ts';
import type { Logger } from '../util/logger.ts';
import type { EventBus } from './events.ts';
import type { Store } from '../store/index.ts';

export interface LogPolicy {
  readonly defaults: LogConfig;
  // All rotated files of all containers together (live files are bounded per container).
  readonly hostCapBytes: number;
  // How long the logs of a removed container stay readable in the journal.
  readonly removedRetentionMs: number;
}

interface Meta {
  id: string;
  name: string;
  image: string;
  labels: Record<string, string>;
  removedAt?: string;
}

export { parseSize };

// Docker's --log-opt keys that mean the same here.
export function parseLogOpts(
  opts: Readonly<Record<string, string>>,
  defaults: LogConfig,
): LogConfig {
  let { maxSize, maxFiles, compress } = defaults;
  for (const [k, v] of Object.entries(opts)) {
    switch (k) {
      case 'max-size':
        maxSize = parseSize(v, 'log-opt max-size');
        if (maxSize < 4096) throw invalid('log-opt max-size', 'must be at least 4k');
        break;
      case 'max-file':
        maxFiles = Number(v);
        if (!Number.isInteger(maxFiles) || maxFiles < 1 || maxFiles > 1000)
          throw invalid('log-opt max-file', `"${v}" must be a whole number from 1 to 1000`);
        break;
      case 'compress':
        if (v !== 'true' && v !== 'false')
          throw invalid('log-opt compress', `"${v}" must be true or false`);
        compress = v === 'true';
        break;
      default:
        throw invalid('log-opt', `unknown option "${k}" (max-size, max-file, compress)`);
    }
  }
  return { maxSize, maxFiles, compress };
}

export class LogService {
  private readonly root: string;
  private readonly policy: LogPolicy;
  private readonly store: Store;
  private readonly events: EventBus;
  private readonly log: Logger;
  private readonly compressing = new Set<string>();
  private capTimer: NodeJS.Timeout | undefined;

  constructor(root: string, policy: LogPolicy, store: Store, events: EventBus, log: Logger) {
    this.root = root;
    this.policy = policy;
    this.store = store;
    this.events = events;
    this.log = log;
  }

  get defaults(): LogConfig {
    return this.policy.defaults;
  }

  dir(id: string): string {
    return join(this.root, id);
  }

  livePath(id: string): string {
    return join(this.root, id, LIVE_NAME);
  }

  async prepare(id: string, name: string, config: ContainerConfig): Promise<void> {
    await mkdir(this.dir(id), { recursive: true, mode: 0o700 });
    const meta: Meta = { id, name, image: config.image, labels: { ...config.labels } };
    await writeFile(join(this.dir(id), 'meta.json'), JSON.stringify(meta));
  }

  // The journal shows a container by its current name.
  async renamed(id: string, name: string): Promise<void> {
    const p = join(this.dir(id), 'meta.json');
    if (!existsSync(p)) return;
    const meta = JSON.parse(readFileSync(p, 'utf8')) as Meta;
    await writeFile(p, JSON.stringify({ ...meta, name }));
  }

  // The container is gone; its logs stay readable in the journal for a while.
  async retire(id: string): Promise<void> {
    const p = join(this.dir(id), 'meta.json');
    if (!existsSync(p)) {
      await rm(this.dir(id), { recursive: true, force: true });
      return;
    }
    const meta = JSON.parse(readFileSync(p, 'utf8')) as Meta;
    meta.removedAt = new Date().toISOString();
    await writeFile(p, JSON.stringify(meta));
  }

  read(id: string, o: ReadOptions) {
    return readLog(this.livePath(id), o);
  }

  sources(): JournalSource[] {
    const out: JournalSource[] = [];
    for (const id of readdirSync(this.root)) {
      try {
        const meta = JSON.parse(readFileSync(join(this.root, id, 'meta.json'), 'utf8')) as Meta;
        out.push({
          id,
          name: meta.name,
          image: meta.image,
          labels: meta.labels,
          livePath: this.livePath(id),
        });
      } catch {
        /* no meta: not a log dir */
      }
    }
    return out;
  }

  journal(filter: (s: JournalSource) => boolean, o: JournalOptions) {
    return readJournal(() => this.sources().filter(filter), o);
  }

  // Called when a monitor reports a rotation.
  onRotated(id: string, config: LogConfig): void {
    if (config.compress) void this.compressRotated(id);
    this.scheduleCap();
  }

  private async compressRotated(id: string): Promise<void> {
    for (const f of listLogFiles(this.livePath(id))) {
      if (f.live || f.gz || this.compressing.has(f.path)) continue;
      this.compressing.add(f.path);
      const tmp = `${f.path}.gz.tmp`;
      try {
        await pipeline(
          createReadStream(f.path),
          createGzip({ level: 6 }),
          createWriteStream(tmp, { mode: 0o600 }),
        );
        // The monitor may have pruned it meanwhile: do not bring it back.
        if (existsSync(f.path)) {
          await rename(tmp, `${f.path}.gz`);
          await unlink(f.path);
        } else await rm(tmp, { force: true });
      } catch (e) {
        await rm(tmp, { force: true });
        this.log.warn({ id, file: f.path, err: errorMessage(e) }, 'log compression failed');
      } finally {
        this.compressing.delete(f.path);
      }
    }
  }

  private scheduleCap(): void {
    if (this.capTimer) return;
    this.capTimer = setTimeout(() => {
      this.capTimer = undefined;
      void this.enforce().catch((e: unknown) =>
        this.log.warn({ err: errorMessage(e) }, 'log cap enforcement failed'),
      );
    }, 200);
    this.capTimer.unref();
  }

  // The host-wide cap: oldest rotated files go first, across containers; then the logs
  // of removed containers past their retention.
  async enforce(now = Date.now()): Promise<{ deletedFiles: number; freedBytes: number }> {
    let deletedFiles = 0;
    let freedBytes = 0;
    const rotated: { path: string; size: number; mtime: number; id: string }[] = [];
    for (const id of readdirSync(this.root)) {
      const dir = join(this.root, id);
      let meta: Meta | undefined;
      try {
        meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as Meta;
      } catch {
        continue;
      }
      if (meta.removedAt && now - Date.parse(meta.removedAt) > this.policy.removedRetentionMs) {
        for (const f of listLogFiles(this.livePath(id))) freedBytes += safeSize(f.path);
        await rm(dir, { recursive: true, force: true });
        deletedFiles++;
        continue;
      }
      for (const f of listLogFiles(this.livePath(id))) {
        // A removed container's live file is finished: it counts like a rotated one.
        if (f.live && !meta.removedAt) continue;
        const st = safeStat(f.path);
        if (st) rotated.push({ path: f.path, size: st.size, mtime: st.mtimeMs, id });
      }
    }
    let total = rotated.reduce((a, f) => a + f.size, 0);
    if (total > this.policy.hostCapBytes) {
      rotated.sort((a, b) => a.mtime - b.mtime);
      const pruned = new Map<string, number>();
      for (const f of rotated) {
        if (total <= this.policy.hostCapBytes) break;
        await rm(f.path, { force: true });
        total -= f.size;
        freedBytes += f.size;
        deletedFiles++;
        pruned.set(f.id, (pruned.get(f.id) ?? 0) + f.size);
      }
      this.store.tx(() => {
        for (const [id, bytes] of pruned) {
          this.events.append({
            type: 'container',
            action: 'log-pruned',
            actorId: id,
            attributes: { bytes: String(bytes), reason: 'host log cap' },
          });
        }
      });
    }
    return { deletedFiles, freedBytes };
  }

  startJanitor(everyMs = 60_000): void {
    const t = setInterval(() => void this.enforce().catch(() => undefined), everyMs);
    t.unref();
  }
}

function safeStat(p: string) {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}

function safeSize(p: string): number {
  return safeStat(p)?.size ?? 0;
}
