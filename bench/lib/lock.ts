// One bench at a time on a host: two would share the cgroup names (berth-bench,
// berth-bench.monitors, the peers' groups) and sweep each other's away mid-run, and each
// would measure the other's load. The lock is a file holding the owner's pid, made with
// O_EXCL; a later run waits for it, and takes it over once its owner is gone (killed before
// it could remove it).
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { pidAlive } from './proc.ts';

export const LOCK_FILE = '/run/berth-bench.lock';
const WAIT_MS = 30 * 60_000;

function owner(): number | undefined {
  try {
    const pid = Number(readFileSync(LOCK_FILE, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

// Takes the lock, waiting (up to 30 min) while another live bench holds it. Returns its
// release, which is idempotent and synchronous (it also runs on a forced exit).
export async function benchLock(
  signal: AbortSignal,
  log: (m: string) => void,
): Promise<() => void> {
  const deadline = Date.now() + WAIT_MS;
  let told = false;
  // Since when the file has had no pid in it: a moment between its owner's create and
  // write, or a crash between the two.
  let unreadableSince: number | undefined;
  for (;;) {
    try {
      writeFileSync(LOCK_FILE, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const pid = owner();
    if (pid === undefined) {
      unreadableSince ??= Date.now();
      if (Date.now() - unreadableSince > 2000) rmSync(LOCK_FILE, { force: true });
    } else if (pid === process.pid || !pidAlive(pid)) {
      unreadableSince = undefined;
      rmSync(LOCK_FILE, { force: true });
      continue;
    } else {
      unreadableSince = undefined;
      if (!told) {
        log(`another bench (pid ${pid}) holds ${LOCK_FILE}: waiting for it to finish`);
        told = true;
      }
    }
    if (Date.now() > deadline) throw new Error(`${LOCK_FILE} held by pid ${pid} for 30 min`);
    await sleep(500, undefined, { signal });
  }
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    if (owner() === process.pid) rmSync(LOCK_FILE, { force: true });
  };
}
