// Keeps the event journal bounded by count and age: once at start, then every minute.
// Deletes go in batches with a turn of the event loop between them, so a large backlog
// (a first start with a smaller bound) never holds the store for long.
import type { EventRepo } from '../store/events.ts';
import type { Logger } from '../util/logger.ts';

const BATCH = 2_000;
const EVERY_MS = 60_000;

export interface EventRetention {
  readonly maxCount: number;
  readonly maxAgeMs: number;
}

export async function pruneEvents(
  repo: EventRepo,
  r: EventRetention,
  log: Logger,
  stopped: () => boolean = () => false,
): Promise<number> {
  const t0 = performance.now();
  let total = 0;
  while (!stopped()) {
    const n = repo.prune(r.maxCount, r.maxAgeMs, { batch: BATCH });
    total += n;
    if (n < BATCH) break;
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (total > 0)
    log.info(
      { pruned: total, oldestSeq: repo.oldestSeq(), ms: Math.round(performance.now() - t0) },
      'events pruned',
    );
  return total;
}

// Returns the stop function.
export function startEventRetention(repo: EventRepo, r: EventRetention, log: Logger): () => void {
  let running = false;
  let stopped = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    pruneEvents(repo, r, log, () => stopped)
      .catch((e: unknown) => log.error({ err: String(e) }, 'event pruning failed'))
      .finally(() => (running = false));
  }, EVERY_MS);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
