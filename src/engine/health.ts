// Docker-style health checks: the state machine that turns probe results into a status,
// and the scheduler that probes each watched container. Running a probe inside a container
// is the host's job (health-exec.ts does it with runc), so the scheduling here stays pure
// enough to test with a fake.
import type { HealthConfig, HealthResult, HealthState } from '../types/domain.ts';
import type { Logger } from '../util/logger.ts';
import { toLogTime } from '../util/time.ts';

// Docker's limits and defaults (moby daemon/health.go), so that inspect output and
// timings look the same to tools written against Docker.
export const MAX_OUTPUT_BYTES = 4096;
export const MAX_LOG_ENTRIES = 5;
export const DEFAULT_INTERVAL_MS = 30_000;
export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_RETRIES = 3;

export function startingState(): HealthState {
  return { status: 'starting', failingStreak: 0, log: [] };
}

// The argv a probe runs, or undefined when the test disables health checks.
export function probeArgv(test: readonly string[]): string[] | undefined {
  const [kind, ...rest] = test;
  if (kind === 'CMD' && rest.length > 0 && rest[0] !== '') return rest;
  // Docker appends every element to the shell's argv; the first is the command line.
  if (kind === 'CMD-SHELL' && rest.length > 0 && rest[0] !== '') return ['/bin/sh', '-c', ...rest];
  // "NONE", an empty test and unknown kinds: Docker runs no monitor for any of them.
  return undefined;
}

// Keeps the first MAX_OUTPUT_BYTES bytes of raw output and marks the cut with "..." as
// Docker does. A string is taken as already limited when its marker is what puts it over,
// so output cut by the prober passes through the state machine unchanged.
export function limitOutput(output: string | Buffer): string {
  const buf = typeof output === 'string' ? Buffer.from(output) : output;
  if (buf.length <= MAX_OUTPUT_BYTES) return typeof output === 'string' ? output : buf.toString();
  if (typeof output === 'string' && buf.length <= MAX_OUTPUT_BYTES + 3 && output.endsWith('...'))
    return output;
  let end = MAX_OUTPUT_BYTES;
  // Back off to a character boundary so the cut does not leave a replacement character.
  while (end > 0 && ((buf[end] ?? 0) & 0xc0) === 0x80) end--;
  return `${buf.subarray(0, end).toString()}...`;
}

// What Go prints for a time.Duration, which is how Docker words its timeout message.
export function goDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${trimNumber(ms)}ms`;
  let rest = ms / 1000;
  const h = Math.floor(rest / 3600);
  rest -= h * 3600;
  const m = Math.floor(rest / 60);
  rest -= m * 60;
  const s = trimNumber(Math.round(rest * 1e6) / 1e6);
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

function trimNumber(n: number): string {
  return String(Number(n.toFixed(6)));
}

export function timeoutMessage(timeoutMs: number, output = ''): string {
  const base = `Health check exceeded timeout (${goDuration(timeoutMs)})`;
  return output === '' ? base : `${base}: ${output}`;
}

// One probe result applied to the previous state. As in Docker, a failure during the start
// period is forgiven only while the status is still 'starting': once the container has
// passed a check, failures count even if the start period has not run out.
export function nextHealthState(
  prev: HealthState | undefined,
  result: HealthResult,
  inStartPeriod: boolean,
  retries: number,
): HealthState {
  const before = prev ?? startingState();
  const limit = retries > 0 ? retries : DEFAULT_RETRIES;
  const entry: HealthResult = { ...result, output: limitOutput(result.output) };
  const log = [...before.log, entry].slice(-MAX_LOG_ENTRIES);
  if (result.exitCode === 0) return { status: 'healthy', failingStreak: 0, log };
  if (inStartPeriod && before.status === 'starting') {
    return { status: before.status, failingStreak: before.failingStreak, log };
  }
  const failingStreak = before.failingStreak + 1;
  return {
    status: failingStreak >= limit ? 'unhealthy' : before.status,
    failingStreak,
    log,
  };
}

export interface ProbeOutcome {
  readonly exitCode: number;
  readonly output: string;
}

export interface HealthHost {
  // Runs argv in the running container with a timeout; never throws for a failing command.
  probe(id: string, argv: readonly string[], timeoutMs: number): Promise<ProbeOutcome>;
  // Persist the new state (and, when status changed, emit a health_status event). Called
  // after every probe.
  record(id: string, state: HealthState, statusChanged: boolean): void;
  // Status just became unhealthy: apply the container's onFailure action.
  unhealthy(id: string): void;
}

interface Watch {
  readonly id: string;
  readonly argv: readonly string[];
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly startPeriodMs: number;
  readonly startedAtMs: number;
  state: HealthState;
  timer: NodeJS.Timeout | undefined;
}

export class HealthService {
  private readonly host: HealthHost;
  private readonly log: Logger;
  private readonly watches = new Map<string, Watch>();
  // Per container, the probe still running, kept across a re-watch so that a new watch
  // never starts a probe before the old one has finished.
  private readonly inflight = new Map<string, Promise<void>>();

  constructor(host: HealthHost, log: Logger) {
    this.host = host;
    this.log = log;
  }

  // Starts (or restarts) probing a running container. Without `initial` the state starts
  // over from 'starting', as it does in Docker on every start; a container berthd adopts
  // passes the state it had persisted.
  watch(id: string, cfg: HealthConfig, startedAtMs: number, initial?: HealthState): void {
    this.unwatch(id);
    const argv = probeArgv(cfg.test);
    if (!argv) return;
    const w: Watch = {
      id,
      argv,
      intervalMs: cfg.intervalMs > 0 ? cfg.intervalMs : DEFAULT_INTERVAL_MS,
      timeoutMs: cfg.timeoutMs > 0 ? cfg.timeoutMs : DEFAULT_TIMEOUT_MS,
      retries: cfg.retries > 0 ? cfg.retries : DEFAULT_RETRIES,
      startPeriodMs: Math.max(0, cfg.startPeriodMs),
      startedAtMs,
      state: initial ?? startingState(),
      timer: undefined,
    };
    this.watches.set(id, w);
    this.schedule(w);
  }

  // Stops probing; a probe in flight finishes but its result is dropped.
  unwatch(id: string): void {
    const w = this.watches.get(id);
    if (!w) return;
    clearTimeout(w.timer);
    this.watches.delete(id);
  }

  stopAll(): void {
    for (const id of [...this.watches.keys()]) this.unwatch(id);
  }

  watching(id: string): boolean {
    return this.watches.has(id);
  }

  // The current state of a watched container (what was last passed to record()).
  state(id: string): HealthState | undefined {
    return this.watches.get(id)?.state;
  }

  // Resolves when no probe is running, e.g. so shutdown does not leave runc execs behind.
  async settled(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all(this.inflight.values());
  }

  private schedule(w: Watch): void {
    // Measured from the end of the previous probe, as Docker does, so a slow probe never
    // runs back to back with the next one.
    w.timer = setTimeout(() => void this.tick(w), w.intervalMs);
    w.timer.unref();
  }

  private async tick(w: Watch): Promise<void> {
    const earlier = this.inflight.get(w.id);
    if (earlier) await earlier;
    if (this.watches.get(w.id) !== w) return;
    const run = this.probeOnce(w);
    this.inflight.set(w.id, run);
    try {
      await run;
    } finally {
      if (this.inflight.get(w.id) === run) this.inflight.delete(w.id);
    }
    if (this.watches.get(w.id) === w) this.schedule(w);
  }

  private async probeOnce(w: Watch): Promise<void> {
    const startMs = Date.now();
    let outcome: ProbeOutcome;
    try {
      outcome = await this.host.probe(w.id, w.argv, w.timeoutMs);
    } catch (e) {
      // Docker records a probe that could not run as a failure with the error as output.
      const message = e instanceof Error ? e.message : String(e);
      this.log.warn({ id: w.id, err: message }, 'health check could not run');
      outcome = { exitCode: -1, output: message };
    }
    const endMs = Date.now();
    if (this.watches.get(w.id) !== w) return;
    const result: HealthResult = {
      start: toLogTime(startMs),
      end: toLogTime(endMs),
      exitCode: outcome.exitCode,
      output: outcome.output,
    };
    const inStartPeriod = startMs - w.startedAtMs < w.startPeriodMs;
    const prevStatus = w.state.status;
    w.state = nextHealthState(w.state, result, inStartPeriod, w.retries);
    const changed = w.state.status !== prevStatus;
    this.log.debug(
      {
        id: w.id,
        exitCode: outcome.exitCode,
        status: w.state.status,
        streak: w.state.failingStreak,
      },
      'health check done',
    );
    try {
      this.host.record(w.id, w.state, changed);
    } catch (e) {
      this.log.error({ id: w.id, err: String(e) }, 'health state not recorded');
    }
    if (changed && w.state.status === 'unhealthy' && this.watches.get(w.id) === w) {
      try {
        this.host.unhealthy(w.id);
      } catch (e) {
        this.log.error({ id: w.id, err: String(e) }, 'health failure action failed');
      }
    }
  }
}
