// Restart policies as a client states them, checked and filled in with Docker's backoff
// (100 ms doubling to 1 min, reset after a 10 s run). The monitor carries them out.
import type { RestartPolicy, RestartPolicyName } from '../types/domain.ts';
import type { RestartPolicyRequest } from '../types/api.ts';
import { invalid } from '../util/errors.ts';

export const NO_RESTART: RestartPolicy = {
  name: 'no',
  maxRetries: 0,
  delayMs: 100,
  maxDelayMs: 60_000,
  factor: 2,
  resetAfterMs: 10_000,
  jitter: 0,
};

const NAMES: readonly RestartPolicyName[] = ['no', 'on-failure', 'always', 'unless-stopped'];
const WEEK_MS = 7 * 24 * 3600 * 1000;

function ms(v: number | undefined, field: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 0 || v > WEEK_MS)
    throw invalid(field, `must be a whole number of milliseconds from 0 to ${WEEK_MS}`);
  return v;
}

export function checkRestartPolicy(r: RestartPolicyRequest | undefined): RestartPolicy {
  if (!r) return NO_RESTART;
  // Docker's API sends "" for no policy.
  const name = (r.name || 'no') as RestartPolicyName;
  if (!NAMES.includes(name))
    throw invalid('restartPolicy.name', `"${r.name}" is not one of ${NAMES.join(', ')}`);
  const maxRetries = r.maximumRetryCount ?? 0;
  if (!Number.isInteger(maxRetries) || maxRetries < 0 || maxRetries > 2 ** 31)
    throw invalid('restartPolicy.maximumRetryCount', 'must be a whole number >= 0');
  if (maxRetries > 0 && name !== 'on-failure')
    throw invalid(
      'restartPolicy.maximumRetryCount',
      `only on-failure takes a maximum retry count, not ${name}`,
    );
  const delayMs = ms(r.delayMs, 'restartPolicy.delayMs', NO_RESTART.delayMs);
  const maxDelayMs = ms(r.maxDelayMs, 'restartPolicy.maxDelayMs', NO_RESTART.maxDelayMs);
  if (maxDelayMs < delayMs)
    throw invalid('restartPolicy.maxDelayMs', `${maxDelayMs} is below the delay ${delayMs}`);
  const factor = r.factor ?? NO_RESTART.factor;
  if (!(factor >= 1 && factor <= 100))
    throw invalid('restartPolicy.factor', `${factor} is not from 1 to 100`);
  const jitter = r.jitter ?? 0;
  if (!(jitter >= 0 && jitter <= 1))
    throw invalid('restartPolicy.jitter', `${jitter} is not a fraction from 0 to 1`);
  return {
    name,
    maxRetries,
    delayMs,
    maxDelayMs,
    factor,
    resetAfterMs: ms(r.resetAfterMs, 'restartPolicy.resetAfterMs', NO_RESTART.resetAfterMs),
    jitter,
  };
}

// The monitor's view: unless-stopped differs from always only when berthd starts.
export function monitorRestartArgs(p: RestartPolicy, restartsSoFar: number): string[] {
  if (p.name === 'no') return [];
  return [
    '--restart',
    p.name === 'on-failure' ? 'on-failure' : 'always',
    '--restart-max',
    String(p.maxRetries),
    '--restart-delay-ms',
    String(p.delayMs),
    '--restart-max-delay-ms',
    String(p.maxDelayMs),
    '--restart-factor',
    String(p.factor),
    '--restart-reset-ms',
    String(p.resetAfterMs),
    '--restart-jitter',
    String(p.jitter),
    '--restart-count',
    String(restartsSoFar),
  ];
}

// Docker's rule for a container found stopped when the daemon starts (after a reboot, or
// a monitor that vanished): always comes back even if an operator stopped it;
// unless-stopped only if not; on-failure if it failed and has retries left.
export function startsWithDaemon(
  p: RestartPolicy,
  stoppedByUser: boolean,
  exitCode: number,
  restarts: number,
): boolean {
  switch (p.name) {
    case 'always':
      return true;
    case 'unless-stopped':
      return !stoppedByUser;
    case 'on-failure':
      return !stoppedByUser && exitCode !== 0 && (p.maxRetries === 0 || restarts < p.maxRetries);
    default:
      return false;
  }
}
