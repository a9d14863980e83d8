// docker run's --restart and --health-* flags, and berth's backoff flags, turned into the
// API's restartPolicy and healthcheck. Durations take Go's units (100ms, 30s, 1m).
import type { Command } from 'commander';
import type { HealthcheckRequest, RestartPolicyRequest } from '../types/api.ts';
import { BerthError } from '../util/errors.ts';
import { parseDurationMs } from '../util/time.ts';

export interface PolicyFlags {
  restart?: string;
  restartDelay?: string;
  restartMaxDelay?: string;
  restartFactor?: string;
  restartResetAfter?: string;
  restartJitter?: string;
  healthCmd?: string;
  healthInterval?: string;
  healthTimeout?: string;
  healthRetries?: string;
  healthStartPeriod?: string;
  healthOnFailure?: string;
  healthcheck?: boolean; // false with --no-healthcheck
}

export function addPolicyOptions(c: Command): Command {
  return c
    .option('--restart <policy>', 'no, on-failure[:max-retries], always or unless-stopped')
    .option('--restart-delay <duration>', 'first restart delay (default 100ms)')
    .option('--restart-max-delay <duration>', 'longest restart delay (default 1m)')
    .option('--restart-factor <number>', 'delay growth per restart (default 2)')
    .option('--restart-reset-after <duration>', 'a run this long resets the delay (default 10s)')
    .option('--restart-jitter <fraction>', 'move each delay by up to this fraction (default 0)')
    .option('--health-cmd <command>', 'command to check health (run by /bin/sh -c)')
    .option('--health-interval <duration>', 'time between checks (default 30s)')
    .option('--health-timeout <duration>', 'longest a check may run (default 30s)')
    .option('--health-retries <n>', 'failures in a row that make it unhealthy (default 3)')
    .option('--health-start-period <duration>', 'failures in this start-up time do not count')
    .option('--health-on-failure <action>', 'when unhealthy: none, kill, restart or stop')
    .option('--no-healthcheck', "disable the image's health check");
}

function bad(field: string, msg: string): BerthError {
  return new BerthError('INVALID_ARGUMENT', `Invalid ${field}: ${msg}`, { field });
}

function duration(v: string | undefined, field: string): number | undefined {
  if (v === undefined) return undefined;
  const ms = parseDurationMs(v);
  if (ms === undefined || !Number.isInteger(Math.round(ms)))
    throw bad(field, `"${v}" is not a duration like 100ms, 30s or 1m`);
  return Math.round(ms);
}

function number(v: string | undefined, field: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw bad(field, `"${v}" is not a number`);
  return n;
}

// "on-failure:3", "always", ... as on docker's command line.
function parseRestartFlag(s: string): { name: string; maximumRetryCount?: number } {
  const [name = '', count] = s.split(':', 2);
  if (count === undefined) return { name };
  if (!/^\d+$/.test(count)) throw bad('restart', `"${s}": the retry count must be a number`);
  return { name, maximumRetryCount: Number(count) };
}

export function restartRequest(f: PolicyFlags): RestartPolicyRequest | undefined {
  const backoff = {
    delayMs: duration(f.restartDelay, 'restart-delay'),
    maxDelayMs: duration(f.restartMaxDelay, 'restart-max-delay'),
    factor: number(f.restartFactor, 'restart-factor'),
    resetAfterMs: duration(f.restartResetAfter, 'restart-reset-after'),
    jitter: number(f.restartJitter, 'restart-jitter'),
  };
  const given = Object.fromEntries(Object.entries(backoff).filter(([, v]) => v !== undefined));
  if (f.restart === undefined) {
    if (Object.keys(given).length > 0)
      throw bad('restart', 'the backoff flags need a --restart policy');
    return undefined;
  }
  return { ...parseRestartFlag(f.restart), ...given };
}

export function healthRequest(f: PolicyFlags): HealthcheckRequest | undefined {
  if (f.healthcheck === false) {
    if (f.healthCmd !== undefined) throw bad('health-cmd', 'conflicts with --no-healthcheck');
    return { test: ['NONE'] };
  }
  const r: HealthcheckRequest = {};
  if (f.healthCmd !== undefined) r.test = ['CMD-SHELL', f.healthCmd];
  const interval = duration(f.healthInterval, 'health-interval');
  const timeout = duration(f.healthTimeout, 'health-timeout');
  const start = duration(f.healthStartPeriod, 'health-start-period');
  const retries = number(f.healthRetries, 'health-retries');
  if (interval !== undefined) r.intervalMs = interval;
  if (timeout !== undefined) r.timeoutMs = timeout;
  if (start !== undefined) r.startPeriodMs = start;
  if (retries !== undefined) r.retries = retries;
  if (f.healthOnFailure !== undefined) r.onFailure = f.healthOnFailure;
  return Object.keys(r).length > 0 ? r : undefined;
}
