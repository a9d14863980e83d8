import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkHealthcheck } from '../../src/engine/health-config.ts';
import {
  checkRestartPolicy,
  monitorRestartArgs,
  startsWithDaemon,
} from '../../src/engine/restart-policy.ts';
import { BerthError } from '../../src/util/errors.ts';

const field = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof BerthError);
    return String(e.details?.['field'] ?? '');
  }
  assert.fail('no error');
};

describe('restart policy', () => {
  it("has Docker's backoff by default", () => {
    const p = checkRestartPolicy({ name: 'always' });
    assert.deepEqual(p, {
      name: 'always',
      maxRetries: 0,
      delayMs: 100,
      maxDelayMs: 60_000,
      factor: 2,
      resetAfterMs: 10_000,
      jitter: 0,
    });
    assert.equal(checkRestartPolicy(undefined).name, 'no');
    assert.equal(checkRestartPolicy({ name: '' }).name, 'no');
  });

  it('names the bad field', () => {
    assert.equal(
      field(() => checkRestartPolicy({ name: 'sometimes' })),
      'restartPolicy.name',
    );
    assert.equal(
      field(() => checkRestartPolicy({ name: 'always', maximumRetryCount: 2 })),
      'restartPolicy.maximumRetryCount',
    );
    assert.equal(
      field(() => checkRestartPolicy({ name: 'always', delayMs: 500, maxDelayMs: 100 })),
      'restartPolicy.maxDelayMs',
    );
    assert.equal(
      field(() => checkRestartPolicy({ name: 'always', factor: 0.9 })),
      'restartPolicy.factor',
    );
    assert.equal(
      field(() => checkRestartPolicy({ name: 'always', jitter: -0.1 })),
      'restartPolicy.jitter',
    );
    assert.equal(
      field(() => checkRestartPolicy({ name: 'always', delayMs: 1.5 })),
      'restartPolicy.delayMs',
    );
  });

  it('tells the monitor unless-stopped as always, and nothing for no', () => {
    assert.deepEqual(monitorRestartArgs(checkRestartPolicy({ name: 'no' }), 0), []);
    const a = monitorRestartArgs(checkRestartPolicy({ name: 'unless-stopped' }), 4);
    assert.equal(a[a.indexOf('--restart') + 1], 'always');
    assert.equal(a[a.indexOf('--restart-count') + 1], '4');
  });

  it("follows Docker's rules when the daemon starts", () => {
    const p = (name: string, maximumRetryCount = 0) =>
      checkRestartPolicy({ name, maximumRetryCount });
    assert.equal(startsWithDaemon(p('always'), true, 0, 0), true);
    assert.equal(startsWithDaemon(p('unless-stopped'), true, 0, 0), false);
    assert.equal(startsWithDaemon(p('unless-stopped'), false, 0, 0), true);
    assert.equal(startsWithDaemon(p('on-failure'), false, 0, 0), false);
    assert.equal(startsWithDaemon(p('on-failure'), false, 1, 0), true);
    assert.equal(startsWithDaemon(p('on-failure', 3), false, 1, 3), false);
    assert.equal(startsWithDaemon(p('no'), false, 1, 0), false);
  });
});

describe('health check config', () => {
  it("fills in Docker's defaults and lets the request override the image", () => {
    const h = checkHealthcheck({ test: ['CMD-SHELL', 'true'] }, undefined);
    assert.deepEqual(h, {
      test: ['CMD-SHELL', 'true'],
      intervalMs: 30_000,
      timeoutMs: 30_000,
      retries: 3,
      startPeriodMs: 0,
      onFailure: 'none',
    });
    const image = { ...h!, intervalMs: 5000, retries: 7 };
    const merged = checkHealthcheck({ intervalMs: 1000 }, image);
    assert.equal(merged?.intervalMs, 1000);
    assert.equal(merged?.retries, 7);
    assert.equal(checkHealthcheck({ test: ['NONE'] }, image), undefined);
    assert.equal(checkHealthcheck(undefined, undefined), undefined);
  });

  it('names the bad field', () => {
    assert.equal(
      field(() => checkHealthcheck({ test: ['RUN', 'x'] }, undefined)),
      'healthcheck.test',
    );
    assert.equal(
      field(() => checkHealthcheck({ test: ['CMD'] }, undefined)),
      'healthcheck.test',
    );
    assert.equal(
      field(() => checkHealthcheck({ test: ['CMD', 'x'], onFailure: 'panic' }, undefined)),
      'healthcheck.onFailure',
    );
    assert.equal(
      field(() => checkHealthcheck({ test: ['CMD', 'x'], intervalMs: 5 }, undefined)),
      'healthcheck.intervalMs',
    );
  });
});
