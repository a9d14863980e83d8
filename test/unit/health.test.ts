import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import {
  goDuration,
  HealthService,
  type HealthHost,
  limitOutput,
  MAX_OUTPUT_BYTES,
  nextHealthState,
  probeArgv,
  type ProbeOutcome,
  startingState,
  timeoutMessage,
} from '../../src/engine/health.ts';
import { childPids } from '../../src/engine/health-exec.ts';
import type { HealthConfig, HealthResult, HealthState } from '../../src/types/domain.ts';
import { silentLogger } from '../../src/util/logger.ts';

const T = '2024-01-01T00:00:00.000000000Z';
const result = (exitCode: number, output = ''): HealthResult => ({
  start: T,
  end: T,
  exitCode,
  output,
});

// Applies results in order, outside the start period unless told.
function run(exitCodes: readonly number[], retries = 3, inStartPeriod = false): HealthState {
  let s: HealthState | undefined;
  for (const c of exitCodes) s = nextHealthState(s, result(c), inStartPeriod, retries);
  assert.ok(s);
  return s;
}

describe('probeArgv', () => {
  it('runs CMD directly and CMD-SHELL through /bin/sh -c', () => {
    assert.deepEqual(probeArgv(['CMD', 'cat', '/ready']), ['cat', '/ready']);
    assert.deepEqual(probeArgv(['CMD-SHELL', 'test -f /ready || exit 1']), [
      '/bin/sh',
      '-c',
      'test -f /ready || exit 1',
    ]);
  });

  it('is undefined for NONE, an empty test, an empty command and unknown kinds', () => {
    assert.equal(probeArgv(['NONE']), undefined);
    assert.equal(probeArgv([]), undefined);
    assert.equal(probeArgv(['CMD']), undefined);
    assert.equal(probeArgv(['CMD-SHELL', '']), undefined);
    assert.equal(probeArgv(['BOGUS', 'true']), undefined);
  });
});

describe('nextHealthState', () => {
  it('becomes healthy on the first success', () => {
    assert.deepEqual(nextHealthState(undefined, result(0, 'ok'), false, 3), {
      status: 'healthy',
      failingStreak: 0,
      log: [result(0, 'ok')],
    });
  });

  it('becomes unhealthy when the failing streak reaches retries', () => {
    assert.equal(run([1]).status, 'starting');
    assert.equal(run([1, 1]).failingStreak, 2);
    assert.equal(run([1, 1]).status, 'starting');
    assert.deepEqual(
      { status: run([1, 1, 1]).status, streak: run([1, 1, 1]).failingStreak },
      { status: 'unhealthy', streak: 3 },
    );
    assert.equal(run([0, 1, 1]).status, 'healthy', 'healthy stays healthy below retries');
    assert.equal(run([0, 1, 1, 1]).status, 'unhealthy');
    assert.equal(run([1, 1, 1, 1]).failingStreak, 4, 'the streak keeps counting');
  });

  it('counts any non-zero exit code, and -1 for a timeout, as a failure', () => {
    assert.equal(run([-1, 2, 255], 3).status, 'unhealthy');
  });

  it('resets the streak on a success', () => {
    const s = run([1, 1, 1, 0]);
    assert.equal(s.status, 'healthy');
    assert.equal(s.failingStreak, 0);
    assert.equal(run([1, 1, 1, 0, 1, 1]).status, 'healthy');
  });

  it('takes retries <= 0 as Docker’s default of 3', () => {
    assert.equal(run([1, 1], 0).status, 'starting');
    assert.equal(run([1, 1, 1], 0).status, 'unhealthy');
  });

  it('ignores failures during the start period while starting', () => {
    const s = run([1, 1, 1, 1], 1, true);
    assert.equal(s.status, 'starting');
    assert.equal(s.failingStreak, 0);
    assert.equal(s.log.length, 4, 'the results are still logged');
  });

  it('becomes healthy on a success during the start period', () => {
    assert.equal(run([1, 0], 1, true).status, 'healthy');
  });

  it('counts failures during the start period once the container has been healthy', () => {
    const healthy = run([0], 1, true);
    const s = nextHealthState(healthy, result(1), true, 1);
    assert.equal(s.status, 'unhealthy');
    assert.equal(s.failingStreak, 1);
  });

  it('counts from the previous state after the start period', () => {
    const starting = run([1, 1], 2, true);
    assert.equal(nextHealthState(starting, result(1), false, 2).failingStreak, 1);
  });

  it('keeps the last five results, oldest first', () => {
    let s: HealthState | undefined;
    for (let i = 0; i < 8; i++) s = nextHealthState(s, result(i % 2, `run ${i}`), false, 100);
    assert.deepEqual(
      s?.log.map((r) => r.output),
      ['run 3', 'run 4', 'run 5', 'run 6', 'run 7'],
    );
  });

  it('does not change the previous state', () => {
    const prev = startingState();
    nextHealthState(prev, result(1), false, 1);
    assert.deepEqual(prev, { status: 'starting', failingStreak: 0, log: [] });
  });

  it('truncates output to 4096 bytes with Docker’s marker', () => {
    const s = nextHealthState(undefined, result(1, 'x'.repeat(5000)), false, 3);
    assert.equal(s.log[0]?.output, `${'x'.repeat(MAX_OUTPUT_BYTES)}...`);
    const exact = 'y'.repeat(MAX_OUTPUT_BYTES);
    assert.equal(nextHealthState(undefined, result(1, exact), false, 3).log[0]?.output, exact);
  });
});

describe('limitOutput', () => {
  it('cuts raw bytes on a character boundary', () => {
    // 4095 ASCII bytes, then a 3-byte character that would straddle the limit.
    const raw = Buffer.from(`${'a'.repeat(MAX_OUTPUT_BYTES - 1)}€tail`);
    const out = limitOutput(raw);
    assert.equal(out, `${'a'.repeat(MAX_OUTPUT_BYTES - 1)}...`);
    assert.ok(!out.includes('\ufffd'));
  });

  it('leaves output it already cut unchanged', () => {
    const once = limitOutput(Buffer.from(`${'a'.repeat(MAX_OUTPUT_BYTES - 2)}€€€`));
    assert.equal(limitOutput(once), once);
    const twice = limitOutput(Buffer.from('b'.repeat(9000)));
    assert.equal(limitOutput(twice), twice);
  });

  it('passes short output through', () => {
    assert.equal(limitOutput(Buffer.from('ok\n')), 'ok\n');
    assert.equal(limitOutput(''), '');
  });
});

describe('timeout message', () => {
  it('words durations as Go does', () => {
    assert.equal(goDuration(300), '300ms');
    assert.equal(goDuration(1000), '1s');
    assert.equal(goDuration(1500), '1.5s');
    assert.equal(goDuration(30_000), '30s');
    assert.equal(goDuration(90_000), '1m30s');
    assert.equal(goDuration(3_600_000), '1h0m0s');
    assert.equal(goDuration(0), '0s');
  });

  it('adds the output collected so far, as newer Docker does', () => {
    assert.equal(timeoutMessage(30_000), 'Health check exceeded timeout (30s)');
    assert.equal(timeoutMessage(300, 'partial'), 'Health check exceeded timeout (300ms): partial');
  });
});

interface Call {
  readonly id: string;
  readonly argv: readonly string[];
  readonly timeoutMs: number;
  readonly at: number;
}

// A fake host whose probes answer from a script (the last entry repeats), each after
// `delayMs`; it records everything the service does.
class FakeHost implements HealthHost {
  readonly calls: Call[] = [];
  readonly records: { id: string; state: HealthState; changed: boolean; at: number }[] = [];
  readonly unhealthyCalls: string[] = [];
  readonly ends: number[] = [];
  active = 0;
  maxActive = 0;
  script: (ProbeOutcome | Error)[];
  delayMs: number;
  onUnhealthy: (id: string) => void = () => undefined;

  constructor(script: (ProbeOutcome | Error)[], delayMs = 0) {
    this.script = script;
    this.delayMs = delayMs;
  }

  async probe(id: string, argv: readonly string[], timeoutMs: number): Promise<ProbeOutcome> {
    this.calls.push({ id, argv, timeoutMs, at: Date.now() });
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await sleep(this.delayMs);
      const next = this.script.length > 1 ? this.script.shift() : this.script[0];
      if (next === undefined) throw new Error('empty script');
      if (next instanceof Error) throw next;
      return next;
    } finally {
      this.active--;
      this.ends.push(Date.now());
    }
  }

  record(id: string, state: HealthState, changed: boolean): void {
    this.records.push({ id, state, changed, at: Date.now() });
  }

  unhealthy(id: string): void {
    this.unhealthyCalls.push(id);
    this.onUnhealthy(id);
  }
}

const ok: ProbeOutcome = { exitCode: 0, output: 'ok' };
const bad: ProbeOutcome = { exitCode: 1, output: 'bad' };

function cfg(o: Partial<HealthConfig> = {}): HealthConfig {
  return {
    test: ['CMD', 'check'],
    intervalMs: 20,
    timeoutMs: 1000,
    retries: 2,
    startPeriodMs: 0,
    onFailure: 'none',
    ...o,
  };
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(5);
  }
}

describe('HealthService', () => {
  it('probes after the interval, then every interval, and records each result', async () => {
    const host = new FakeHost([ok]);
    const svc = new HealthService(host, silentLogger);
    const t0 = Date.now();
    svc.watch('c1', cfg({ intervalMs: 40, timeoutMs: 500 }), t0);
    assert.ok(svc.watching('c1'));
    await until(() => host.records.length >= 3);
    svc.stopAll();
    assert.ok((host.calls[0]?.at ?? 0) - t0 >= 35, 'the first probe waits one interval');
    assert.deepEqual(host.calls[0]?.argv, ['check']);
    assert.equal(host.calls[0]?.timeoutMs, 500);
    assert.deepEqual(
      host.records.map((r) => [r.state.status, r.changed]),
      [
        ['healthy', true],
        ['healthy', false],
        ['healthy', false],
      ],
    );
    assert.equal(host.records[2]?.state.log.length, 3);
    assert.match(host.records[0]?.state.log[0]?.start ?? '', /^\d{4}-\d\d-\d\dT[\d:]+\.\d{9}Z$/);
  });

  it('never runs two probes at once and waits the interval after each one ends', async () => {
    const host = new FakeHost([ok], 60);
    const svc = new HealthService(host, silentLogger);
    svc.watch('c1', cfg({ intervalMs: 20 }), Date.now());
    await until(() => host.calls.length >= 3);
    svc.stopAll();
    await svc.settled();
    assert.equal(host.maxActive, 1);
    for (let i = 1; i < host.calls.length; i++) {
      const gap = (host.calls[i]?.at ?? 0) - (host.ends[i - 1] ?? 0);
      assert.ok(gap >= 15, `gap ${gap} ms after probe ${i - 1}`);
    }
  });

  it('calls unhealthy once, when the status turns unhealthy', async () => {
    const host = new FakeHost([ok, bad]);
    const svc = new HealthService(host, silentLogger);
    svc.watch('c1', cfg({ retries: 2 }), Date.now());
    await until(() => host.records.length >= 5);
    svc.stopAll();
    assert.deepEqual(
      host.records.slice(0, 5).map((r) => [r.state.status, r.state.failingStreak, r.changed]),
      [
        ['healthy', 0, true],
        ['healthy', 1, false],
        ['unhealthy', 2, true],
        ['unhealthy', 3, false],
        ['unhealthy', 4, false],
      ],
    );
    assert.deepEqual(host.unhealthyCalls, ['c1']);
  });

  it('keeps a container starting while it fails during the start period', async () => {
    const host = new FakeHost([bad]);
    const svc = new HealthService(host, silentLogger);
    svc.watch('c1', cfg({ retries: 1, startPeriodMs: 60_000 }), Date.now());
    await until(() => host.records.length >= 3);
    svc.stopAll();
    assert.ok(host.records.every((r) => r.state.status === 'starting' && !r.changed));
    assert.deepEqual(host.unhealthyCalls, []);
  });

  it('counts failures once the start period is over', async () => {
    const host = new FakeHost([bad]);
    const svc = new HealthService(host, silentLogger);
    // Started long ago: the start period has run out.
    svc.watch('c1', cfg({ retries: 1, startPeriodMs: 1000 }), Date.now() - 5000);
    await until(() => host.records.length >= 1);
    svc.stopAll();
    assert.equal(host.records[0]?.state.status, 'unhealthy');
  });

  it('records a probe that throws as a failure with the error as output', async () => {
    const host = new FakeHost([new Error('runc exec: spawn ENOENT')]);
    const svc = new HealthService(host, silentLogger);
    svc.watch('c1', cfg({ retries: 1 }), Date.now());
    await until(() => host.records.length >= 2);
    svc.stopAll();
    const r = host.records[0]?.state.log[0];
    assert.equal(r?.exitCode, -1);
    assert.equal(r?.output, 'runc exec: spawn ENOENT');
  });

  it('ignores the result of a probe in flight when unwatched', async () => {
    const host = new FakeHost([ok], 80);
    const svc = new HealthService(host, silentLogger);
    svc.watch('c1', cfg(), Date.now());
    await until(() => host.calls.length === 1);
    svc.unwatch('c1');
    assert.equal(svc.watching('c1'), false);
    await svc.settled();
    await sleep(60);
    assert.equal(host.records.length, 0);
    assert.equal(host.calls.length, 1, 'no probe after unwatch');
  });

  it('stopAll cancels every watch before its first probe', async () => {
    const host = new FakeHost([ok]);
    const svc = new HealthService(host, silentLogger);
    svc.watch('a', cfg(), Date.now());
    svc.watch('b', cfg(), Date.now());
    svc.stopAll();
    await sleep(60);
    assert.equal(host.calls.length, 0);
    assert.equal(svc.watching('a') || svc.watching('b'), false);
  });

  it('restarts from starting on a new watch, or from the state it is given', async () => {
    const host = new FakeHost([bad]);
    const svc = new HealthService(host, silentLogger);
    svc.watch('c1', cfg({ retries: 1 }), Date.now());
    await until(() => host.records.length >= 1);
    assert.equal(svc.state('c1')?.status, 'unhealthy');
    svc.watch('c1', cfg({ retries: 1, intervalMs: 60_000 }), Date.now());
    assert.deepEqual(svc.state('c1'), startingState());

    const adopted: HealthState = { status: 'healthy', failingStreak: 0, log: [result(0, 'old')] };
    const host2 = new FakeHost([bad]);
    const svc2 = new HealthService(host2, silentLogger);
    svc2.watch('c2', cfg({ retries: 2 }), Date.now() - 60_000, adopted);
    await until(() => host2.records.length >= 1);
    svc2.stopAll();
    svc.stopAll();
    assert.deepEqual(
      [host2.records[0]?.state.status, host2.records[0]?.state.failingStreak],
      ['healthy', 1],
    );
    assert.deepEqual(
      host2.records[0]?.state.log.map((r) => r.output),
      ['old', 'bad'],
    );
  });

  it('does not start a new watch’s probe before the old one’s has ended', async () => {
    const host = new FakeHost([ok], 100);
    const svc = new HealthService(host, silentLogger);
    svc.watch('c1', cfg({ intervalMs: 10 }), Date.now());
    await until(() => host.calls.length === 1);
    svc.watch('c1', cfg({ intervalMs: 10 }), Date.now());
    await until(() => host.records.length === 1);
    const callsAtFirstRecord = host.calls.length;
    svc.stopAll();
    await svc.settled();
    assert.equal(host.maxActive, 1);
    assert.equal(callsAtFirstRecord, 2, 'the old watch’s result was dropped');
  });

  it('stops probing when unhealthy() unwatches the container', async () => {
    const host = new FakeHost([bad]);
    const svc = new HealthService(host, silentLogger);
    host.onUnhealthy = (id) => svc.unwatch(id);
    svc.watch('c1', cfg({ retries: 1 }), Date.now());
    await until(() => host.unhealthyCalls.length === 1);
    await sleep(60);
    assert.equal(host.calls.length, 1);
  });

  it('does not watch a container whose test is NONE', () => {
    const host = new FakeHost([ok]);
    const svc = new HealthService(host, silentLogger);
    svc.watch('c1', cfg({ intervalMs: 10 }), Date.now());
    svc.watch('c1', cfg({ test: ['NONE'] }), Date.now());
    assert.equal(svc.watching('c1'), false);
  });

  it('keeps no process alive with its timers', () => {
    const mod = pathToFileURL(join(import.meta.dirname, '..', '..', 'src', 'engine', 'health.js'));
    const script = `
      import { HealthService } from ${JSON.stringify(mod.href)};
      const host = { probe: async () => ({ exitCode: 0, output: '' }), record() {}, unhealthy() {} };
      const log = { info() {}, warn() {}, error() {}, debug() {} };
      new HealthService(host, log).watch('c1', {
        test: ['CMD', 'true'], intervalMs: 60000, timeoutMs: 1000, retries: 3,
        startPeriodMs: 0, onFailure: 'none',
      }, Date.now());
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      timeout: 10_000,
      encoding: 'utf8',
    });
    assert.equal(r.signal, null, 'the process exited on its own');
    assert.equal(r.status, 0, r.stderr);
  });
});

describe('childPids', () => {
  // A /proc with runc (pid 100, threads 100 and 101), its children 200 and 201, and an
  // unrelated 300.
  function fixture(withChildrenFiles: boolean): string {
    const root = mkdtempSync(join(tmpdir(), 'bt-proc-'));
    const proc = (pid: number, ppid: number) => {
      mkdirSync(join(root, String(pid), 'task', String(pid)), { recursive: true });
      writeFileSync(join(root, String(pid), 'stat'), `${pid} (runc init) S ${ppid} ${pid} 1 0`);
    };
    proc(100, 1);
    mkdirSync(join(root, '100', 'task', '101'), { recursive: true });
    proc(200, 100);
    proc(201, 100);
    proc(300, 1);
    if (withChildrenFiles) {
      writeFileSync(join(root, '100', 'task', '100', 'children'), '200 ');
      writeFileSync(join(root, '100', 'task', '101', 'children'), '201 ');
    }
    return root;
  }

  it('reads every thread’s children file', () => {
    const root = fixture(true);
    try {
      assert.deepEqual(childPids(100, root).sort(), [200, 201]);
    } finally {
      rmSync(root, { recursive: true });
    }
  });

  it('finds children by their parent where the kernel has no children files', () => {
    const root = fixture(false);
    try {
      assert.deepEqual(childPids(100, root).sort(), [200, 201]);
      assert.deepEqual(childPids(999, root), [], 'a process that is gone has none');
    } finally {
      rmSync(root, { recursive: true });
    }
  });
});
