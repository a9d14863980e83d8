// Health checks as a client states them, checked and filled in with Docker's defaults
// (every 30 s, 30 s timeout, 3 retries, no start period). The image's HEALTHCHECK is the
// base; the request overrides it field by field, as `docker run --health-*` does.
import type { HealthConfig, HealthOnFailure } from '../types/domain.ts';
import type { HealthcheckRequest } from '../types/api.ts';
import { invalid } from '../util/errors.ts';

const ON_FAILURE: readonly HealthOnFailure[] = ['none', 'kill', 'restart', 'stop'];
const DAY_MS = 24 * 3600 * 1000;

function duration(v: number | undefined, field: string, dflt: number, min: number): number {
  if (v === undefined || v === 0) return dflt;
  if (!Number.isInteger(v) || v < min || v > DAY_MS)
    throw invalid(field, `must be a duration from ${min} ms to 24h`);
  return v;
}

export function checkHealthcheck(
  req: HealthcheckRequest | undefined,
  image: HealthConfig | undefined,
): HealthConfig | undefined {
  const test = req?.test && req.test.length > 0 ? req.test : image?.test;
  if (!test || test.length === 0 || test[0] === 'NONE') return undefined;
  const kind = test[0];
  if (kind !== 'CMD' && kind !== 'CMD-SHELL')
    throw invalid('healthcheck.test', `must start with CMD, CMD-SHELL or NONE, not "${kind}"`);
  if (test.length < 2 || !test[1]) throw invalid('healthcheck.test', `${kind} needs a command`);
  if (kind === 'CMD-SHELL' && test.length > 2)
    throw invalid('healthcheck.test', 'CMD-SHELL takes one command string');
  const onFailure = (req?.onFailure ?? image?.onFailure ?? 'none') as HealthOnFailure;
  if (!ON_FAILURE.includes(onFailure))
    throw invalid('healthcheck.onFailure', `"${onFailure}" is not one of ${ON_FAILURE.join(', ')}`);
  const retries = req?.retries || image?.retries || 3;
  if (!Number.isInteger(retries) || retries < 1 || retries > 1000)
    throw invalid('healthcheck.retries', 'must be from 1 to 1000');
  return {
    test,
    // Docker refuses intervals and timeouts under 1 ms; probing a container more often
    // than every 100 ms only costs the host, so berth draws the line there.
    intervalMs: duration(
      req?.intervalMs,
      'healthcheck.intervalMs',
      image?.intervalMs ?? 30_000,
      100,
    ),
    timeoutMs: duration(req?.timeoutMs, 'healthcheck.timeoutMs', image?.timeoutMs ?? 30_000, 100),
    retries,
    startPeriodMs:
      req?.startPeriodMs !== undefined
        ? duration(req.startPeriodMs, 'healthcheck.startPeriodMs', 0, 0)
        : (image?.startPeriodMs ?? 0),
    onFailure,
  };
}
