// A crash of berthd at any point of a start is cleaned up on the next start: nothing is
// half-made, nothing leaks, and what did start is adopted.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { monitorPids, pidAlive, TestDaemon } from '../helpers/daemon.ts';

interface State {
  Id: string;
  State: { Status: string; Pid: number };
}

describe('kill -9 of berthd in the middle of starting containers', () => {
  let d: TestDaemon;
  before(async () => {
    d = await TestDaemon.start();
  });
  after(async () => {
    await d.destroy();
  });

  it('leaves every container either running and adopted or not started, with nothing leaked', async () => {
    // Kill points spread over the whole start path: request parsing, bundle writing,
    // monitor launch, runc create, recording, runc start (the CLI itself takes ~80 ms to
    // reach berthd).
    for (const delayMs of [60, 80, 95, 110, 120, 130, 140, 150, 160, 170, 185, 200, 230, 260]) {
      const run = d.berth(['run', '-d', 'busybox', 'sleep', '300']);
      await sleep(delayMs);
      await d.kill9();
      await run;
      await d.startProcess();
      const ids = (await d.berthOk(['ps', '-aq', '--no-trunc'])).trim().split('\n').filter(Boolean);
      const all =
        ids.length === 0 ? [] : (JSON.parse(await d.berthOk(['inspect', ...ids])) as State[]);
      for (const c of all) {
        if (c.State.Status === 'running') {
          assert.ok(pidAlive(c.State.Pid), `running container ${c.Id} has a live pid`);
        } else {
          assert.ok(['created', 'exited'].includes(c.State.Status), c.State.Status);
          assert.deepEqual(d.leaks([c.Id]), [], `not-running ${c.Id} (after ${delayMs} ms)`);
        }
      }
      // Monitors alive are exactly those of running containers.
      assert.equal(
        monitorPids(d.runRoot).length,
        all.filter((c) => c.State.Status === 'running').length,
        `monitors after ${delayMs} ms`,
      );
    }
    const ids = (await d.berthOk(['ps', '-aq', '--no-trunc'])).trim().split('\n').filter(Boolean);
    await d.berthOk(['rm', '-f', ...ids]);
    assert.deepEqual(d.leaks(ids), []);
  });
});

describe('the monitors cgroup', () => {
  it('is made again when it went, so starts keep working', async () => {
    const parent = `btcg${Math.floor(Math.random() * 1e6)}`;
    const d = await TestDaemon.start(['--cgroup-parent', parent]);
    const groups = () =>
      readdirSync('/sys/fs/cgroup').flatMap((h) =>
        [`${parent}.monitors`, parent]
          .map((g) => join('/sys/fs/cgroup', h, g))
          .filter((p) => existsSync(p)),
      );
    try {
      // Empty while nothing runs: an operator's (or a sweep's) rmdir takes it.
      for (const g of groups()) if (g.endsWith('.monitors')) rmdirSync(g);
      const out = await d.berthOk(['run', '--rm', '--network', 'none', 'busybox', 'echo', 'ok']);
      assert.equal(out.trim(), 'ok');
    } finally {
      await d.destroy();
      for (const g of groups()) rmdirSync(g);
    }
  });
});
