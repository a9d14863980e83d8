// Runner-less: containers outlive berthd and are re-adopted when it returns.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pidAlive, TestDaemon } from '../helpers/daemon.ts';

interface State {
  Id: string;
  State: { Status: string; Pid: number; ExitCode: number; FinishedAt: string; Running: boolean };
}

describe('re-adoption after kill -9 of berthd', () => {
  let d: TestDaemon;
  before(async () => {
    d = await TestDaemon.start();
  });
  after(async () => {
    await d.destroy();
  });

  const inspectAll = async (ids: string[]) =>
    JSON.parse(await d.berthOk(['inspect', ...ids])) as State[];

  it('keeps ten containers running, records one that exits while down, and controls them all again', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      // Each prints a line a tenth of a second, so logging across the outage is visible.
      ids.push(
        await d.runDetached([
          '--name',
          `keep${i}`,
          'busybox',
          'sh',
          '-c',
          "trap 'exit 0' TERM; i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done",
        ]),
      );
    }
    // One more that will exit by itself while berthd is down.
    const short = await d.runDetached([
      '--name',
      'short',
      'busybox',
      'sh',
      '-c',
      'sleep 1; exit 7',
    ]);
    const before = await inspectAll(ids);
    const pids = before.map((s) => s.State.Pid);
    assert.ok(pids.every((p) => p > 0 && pidAlive(p)));

    await d.kill9();
    await sleep(1500);
    // Nothing changed for the containers: same processes, still logging.
    assert.ok(pids.every(pidAlive), 'every container survived kill -9 of berthd');
    const logSize = (id: string) => readFileSync(`${d.root}/logs/${id}/container.log`).length;
    const sizes = ids.map(logSize);
    await sleep(300);
    assert.ok(
      ids.every((id, i) => logSize(id) > (sizes[i] ?? 0)),
      'containers keep logging with berthd down',
    );

    const tDown = Date.now();
    await d.startProcess();
    const afterRestart = await inspectAll(ids);
    assert.deepEqual(
      afterRestart.map((s) => [s.State.Status, s.State.Pid]),
      pids.map((p) => ['running', p]),
    );
    const s = (await inspectAll([short]))[0];
    assert.equal(s?.State.Status, 'exited');
    assert.equal(s?.State.ExitCode, 7);
    const finished = Date.parse(s?.State.FinishedAt ?? '');
    assert.ok(finished < tDown, 'finish time is when it really exited, not when berthd noticed');

    const ps = await d.berthOk(['ps', '-q', '--no-trunc']);
    assert.deepEqual(ps.trim().split('\n').sort(), [...ids].sort());

    // Fully controllable again: stop one, kill one, rm -f the rest.
    await d.berthOk(['stop', ids[0] as string]);
    assert.equal((await inspectAll([ids[0] as string]))[0]?.State.ExitCode, 0);
    await d.berthOk(['kill', ids[1] as string]);
    assert.equal((await d.berthOk(['wait', ids[1] as string])).trim(), '137');
    await d.berthOk(['rm', '-f', ...ids, short]);
    assert.ok(pids.every((p) => !pidAlive(p)));
    assert.deepEqual(d.leaks([...ids, short]), []);
  });

  it('notices an exit that happens after re-adoption', async () => {
    const id = await d.runDetached(['busybox', 'sh', '-c', 'sleep 2; exit 9']);
    await d.kill9();
    await d.startProcess();
    assert.equal(
      (await inspectAll([id]))[0]?.State.Status,
      'running',
      'adopted while still running',
    );
    assert.equal((await d.berthOk(['wait', id])).trim(), '9');
    await d.berthOk(['rm', id]);
  });

  it('a clean SIGTERM of berthd also leaves containers running', async () => {
    const id = await d.runDetached(['busybox', 'sleep', '300']);
    const pid = (await inspectAll([id]))[0]?.State.Pid ?? 0;
    await d.stopProcess();
    await sleep(300);
    assert.ok(pidAlive(pid));
    await d.startProcess();
    assert.equal((await inspectAll([id]))[0]?.State.Pid, pid);
    await d.berthOk(['rm', '-f', id]);
    assert.deepEqual(d.leaks([id]), []);
  });

  it('refuses a second berthd on the same data root, or on the same run root', async () => {
    const r = await d.berth(['daemon', '--root', d.root, '--run-root', `${d.dir}/run2`]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /already running/);
    const id = await d.runDetached(['busybox', 'sleep', '300']);
    const pid = (await inspectAll([id]))[0]?.State.Pid ?? 0;
    const s = await d.berth([
      'daemon',
      '--root',
      `${d.dir}/data2`,
      '--run-root',
      d.runRoot,
      '--socket',
      `${d.dir}/s2.sock`,
    ]);
    assert.equal(s.code, 125);
    assert.match(s.stderr, /already running/);
    assert.ok(pidAlive(pid), "the first daemon's container is untouched");
    await d.berthOk(['rm', '-f', id]);
  });
});
