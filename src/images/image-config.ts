// The parts of an OCI / Docker image config a container is made from.
import type { HealthConfig, ImageConfig } from '../types/domain.ts';
import type { OciImageConfig } from './registry.ts';

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// Docker's durations are nanoseconds, 0 meaning "the default".
function ms(ns: number | undefined, dflt: number): number {
  return ns && ns > 0 ? Math.max(1, Math.round(ns / 1e6)) : dflt;
}

function healthOf(
  h: NonNullable<OciImageConfig['config']>['Healthcheck'],
): HealthConfig | undefined {
  if (!h?.Test || h.Test.length === 0) return undefined;
  return {
    test: [...h.Test],
    intervalMs: ms(h.Interval, 30_000),
    timeoutMs: ms(h.Timeout, 30_000),
    retries: h.Retries && h.Retries > 0 ? h.Retries : 3,
    startPeriodMs: ms(h.StartPeriod, 0),
    onFailure: 'none',
  };
}

export function toImageConfig(oci: OciImageConfig): ImageConfig {
  const c = oci.config ?? {};
  const env = c.Env && c.Env.length > 0 ? [...c.Env] : [DEFAULT_PATH];
  const health = healthOf(c.Healthcheck);
  return {
    env,
    cmd: [...(c.Cmd ?? [])],
    entrypoint: [...(c.Entrypoint ?? [])],
    workdir: c.WorkingDir || '/',
    user: c.User ?? '',
    labels: { ...(c.Labels ?? {}) },
    stopSignal: c.StopSignal || 'SIGTERM',
    ...(health ? { healthcheck: health } : {}),
    exposedPorts: Object.keys(c.ExposedPorts ?? {}),
  };
}
