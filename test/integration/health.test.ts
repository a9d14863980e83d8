// Health checks through berthd: status in inspect and ps, results with their output,
// health_status events, and a restart when the container is unhealthy and asked to.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestDaemon, waitForValue } from '../helpers/daemon.ts';

interface Inspect {
  RestartCount: number;
  State: {
    Status: string;
    Pid: number;
    Health?: {
      Status: string;
      FailingStreak: number;
      Log: { ExitCode: number; Output: string; Start: string; End: string }[];
    };
  };
}

describe('health checks', () => {
  let d: TestDaemon;
  before(async () => {
    d = await TestDaemon.start();
  });
  after(async () => {
    await d.destroy();
  });

  const inspect = (id: string) => d.inspect<Inspect>(id);

  it('reports unhealthy, then healthy, with the results and events', async () => {
    const id = await d.runDetached([
      '--health-cmd',
      'echo probing; test -e /tmp/ok',
      '--health-interval',
      '200ms',
      '--health-retries',
      '2',
      'busybox',
      'sleep',
      '1000',
    ]);
    const first = await inspect(id);
    assert.equal(first.State.Health?.Status, 'starting');
    const bad = await waitForValue('unhealthy', async () => {
      const c = await inspect(id);
      return c.State.Health?.Status === 'unhealthy' ? c : undefined;
    });
    assert.ok((bad.State.Health?.FailingStreak ?? 0) >= 2);
    const last = bad.State.Health?.Log.at(-1);
    assert.equal(last?.ExitCode, 1);
    assert.equal(last?.Output, 'probing\n');
    const ps = await d.berthOk(['ps', '--filter', `id=${id}`, '--format', '{{.Status}}']);
    assert.match(ps.trim(), /^Up .* \(unhealthy\)$/);
    // Still running: without --health-on-failure nothing is done about it.
    assert.equal(bad.State.Status, 'running');
    assert.equal(bad.State.Pid, first.State.Pid);

    await d.berthOk(['exec', id, 'touch', '/tmp/ok']);
    await waitForValue('healthy', async () =>
      (await inspect(id)).State.Health?.Status === 'healthy' ? true : undefined,
    );
    const statuses = (await d.journal(id))
      .filter((e) => e.action === 'health_status')
      .map((e) => e.attributes['healthStatus']);
    assert.deepEqual(statuses, ['unhealthy', 'healthy']);
    await d.berthOk(['rm', '-f', id]);
  });

  it('restarts an unhealthy container with --health-on-failure restart', async () => {
    const id = await d.runDetached([
      '--health-cmd',
      'test -e /tmp/ok',
      '--health-interval',
      '200ms',
      '--health-retries',
      '2',
      '--health-on-failure',
      'restart',
      '--stop-timeout',
      '1',
      'busybox',
      'sleep',
      '1000',
    ]);
    const pid = (await inspect(id)).State.Pid;
    const c = await waitForValue('restarted', async () => {
      const x = await inspect(id);
      return x.RestartCount >= 1 && x.State.Status === 'running' && x.State.Pid !== pid
        ? x
        : undefined;
    });
    assert.notEqual(c.State.Pid, pid);
    const evs = await d.journal(id);
    const restart = evs.find((e) => e.action === 'restart');
    assert.equal(restart?.attributes['reason'], 'health');
    assert.ok(
      evs.some((e) => e.action === 'health-action' && e.attributes['action'] === 'restart'),
    );
    // Healthy again once the check passes in the new run.
    await d.berthOk(['exec', id, 'touch', '/tmp/ok']);
    await waitForValue('healthy after the restart', async () =>
      (await inspect(id)).State.Health?.Status === 'healthy' ? true : undefined,
    );
    await d.berthOk(['rm', '-f', id]);
  });

  it('refuses a bad health option with the field named', async () => {
    const r = await d.berth([
      'create',
      '--health-cmd',
      'true',
      '--health-on-failure',
      'panic',
      'busybox',
      'true',
    ]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /healthcheck\.onFailure/);
  });
});
