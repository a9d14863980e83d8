// Restart policies carried out by the monitor: backoff from the journal's own times, give
// up, reset after a stable run, restarts while berthd is down, operator stops, and
// Docker's rules when berthd starts.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  monitorPids,
  pidAlive,
  runCommand,
  TestDaemon,
  waitForValue,
  type JournalEvent,
} from '../helpers/daemon.ts';

interface Inspect {
  Id: string;
  Image: string;
  RestartCount: number;
  State: {
    Status: string;
    Pid: number;
    ExitCode: number;
    Restarting: boolean;
    FinishedAt: string;
    NextRestartAt: string;
  };
}

const t = (e: JournalEvent) => Date.parse(e.time);

// The container reads this file through a read-only bind (the host writes it), so a test
// can change what the next run does: state that survives a restart, which a container's
// own tmpfs does not.
function modeDir(): string {
  return mkdtempSync('/tmp/bt-mode-');
}

describe('restart policies', () => {
  let d: TestDaemon;
  before(async () => {
    d = await TestDaemon.start();
  });
  after(async () => {
    await d.destroy();
  });

  it('backs off as configured and gives up after on-failure:3 with a final event', async () => {
    const id = await d.runDetached([
      '--restart',
      'on-failure:3',
      '--restart-delay',
      '200ms',
      '--restart-factor',
      '2',
      'busybox',
      'sh',
      '-c',
      'exit 3',
    ]);
    const evs = await waitForValue('the give-up', async () => {
      const e = await d.journal(id);
      return e.some((x) => x.action === 'restart-giveup') ? e : undefined;
    });
    const dies = evs.filter((e) => e.action === 'die');
    const restarts = evs.filter((e) => e.action === 'restart');
    const planned = evs.filter((e) => e.action === 'restart-scheduled');
    assert.equal(dies.length, 4, 'the first run and three restarts');
    assert.deepEqual(
      restarts.map((e) => e.attributes['attempt']),
      ['1', '2', '3'],
    );
    assert.deepEqual(
      planned.map((e) => e.attributes['delayMs']),
      ['200', '400', '800'],
    );
    for (const d0 of dies) assert.equal(d0.attributes['exitCode'], '3');
    // From the journal's own times: each restart came its delay after the exit before it.
    for (let i = 0; i < 3; i++) {
      const gap = t(restarts[i] as JournalEvent) - t(dies[i] as JournalEvent);
      const want = [200, 400, 800][i] as number;
      assert.ok(gap >= want - 2 && gap < want + 1500, `restart ${i + 1}: ${gap} ms, want ${want}`);
    }
    const giveup = evs.find((e) => e.action === 'restart-giveup') as JournalEvent;
    assert.equal(giveup.attributes['restarts'], '3');
    assert.ok(giveup.seq > (dies[3] as JournalEvent).seq);
    const c = await waitForValue('exited', async () => {
      const x = await d.inspect<Inspect>(id);
      return x.State.Status === 'exited' ? x : undefined;
    });
    assert.equal(c.RestartCount, 3);
    assert.equal(c.State.ExitCode, 3);
    assert.deepEqual(d.leaks([id]), []);
  });

  it('resets the backoff after a run that lasted the reset time', async () => {
    const dir = modeDir();
    const id = await d.runDetached([
      '-v',
      `${dir}:/mode:ro`,
      '--restart',
      'always',
      '--restart-delay',
      '100ms',
      '--restart-reset-after',
      '1s',
      'busybox',
      'sh',
      '-c',
      'if [ "$(cat /mode/state 2>/dev/null)" = stable ]; then sleep 1.5; fi; exit 1',
    ]);
    const mode = join(dir, 'state');
    try {
      await waitForValue('three quick restarts', async () => {
        const e = await d.journal(id);
        return e.filter((x) => x.action === 'restart').length >= 3 ? e : undefined;
      });
      writeFileSync(mode, 'stable\n');
      // A run of 1.5 s, then the next delay starts over at 100 ms.
      const evs = await waitForValue('a long run and a restart after it', async () => {
        const e = await d.journal(id);
        const long = e.findIndex(
          (x) => x.action === 'die' && Number(x.attributes['runMs']) >= 1000,
        );
        return long >= 0 && e.slice(long).some((x) => x.action === 'restart-scheduled')
          ? { e, long }
          : undefined;
      });
      const before = evs.e.slice(0, evs.long).filter((x) => x.action === 'restart-scheduled');
      const delays = before.map((x) => Number(x.attributes['delayMs']));
      assert.deepEqual(delays.slice(0, 3), [100, 200, 400], 'doubling while it crashes');
      const next = evs.e
        .slice(evs.long)
        .find((x) => x.action === 'restart-scheduled') as JournalEvent;
      assert.equal(next.attributes['delayMs'], '100', 'reset after the stable run');
    } finally {
      await d.berthOk(['rm', '-f', id]);
      rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual(d.leaks([id]), []);
  });

  it('stop and kill by an operator end the restarting, also between two runs', async () => {
    const id = await d.runDetached([
      '--restart',
      'always',
      '--restart-delay',
      '2s',
      'busybox',
      'sh',
      '-c',
      'sleep 0.2; exit 1',
    ]);
    const c = await waitForValue('restarting', async () => {
      const x = await d.inspect<Inspect>(id);
      return x.State.Status === 'restarting' ? x : undefined;
    });
    assert.equal(c.State.Restarting, true);
    assert.ok(Date.parse(c.State.NextRestartAt) > Date.now() - 500);
    const ps = await d.berthOk(['ps', '-a', '--filter', `id=${id}`, '--format', '{{.Status}}']);
    assert.match(ps.trim(), /^Restarting \(1\) .* ago$/);
    // Called off, not waited for: a stop that waited for the restart would leave a restart
    // in the journal, which is checked below.
    await d.berthOk(['stop', id]);
    const x = await d.inspect<Inspect>(id);
    assert.equal(x.State.Status, 'exited');
    await sleep(2500);
    assert.equal((await d.journal(id)).filter((e) => e.action === 'restart').length, 0);
    assert.deepEqual(d.leaks([id]), []);

    // kill while it runs: no restart either.
    const k = await d.runDetached(['--restart', 'always', 'busybox', 'sleep', '1000']);
    await d.berthOk(['kill', k]);
    await waitForValue('exited', async () =>
      (await d.inspect<Inspect>(k)).State.Status === 'exited' ? true : undefined,
    );
    await sleep(500);
    assert.equal((await d.journal(k)).filter((e) => e.action === 'restart').length, 0);
    // A start by the operator counts from zero again.
    await d.berthOk(['start', k]);
    assert.equal((await d.inspect<Inspect>(k)).RestartCount, 0);
    await d.berthOk(['rm', '-f', id, k]);
  });

  it('an OOM kill restarts an on-failure container, with the reason oom', async () => {
    const id = await d.runDetached([
      '--restart',
      'on-failure:1',
      '-m',
      '16m',
      '--memory-swap',
      '16m',
      'busybox',
      'sh',
      '-c',
      'tail /dev/zero',
    ]);
    const evs = await waitForValue('the restart after the OOM kill', async () => {
      const e = await d.journal(id);
      return e.some((x) => x.action === 'restart-giveup') ? e : undefined;
    });
    const die = evs.find((e) => e.action === 'die');
    assert.equal(die?.attributes['oomKilled'], 'true');
    assert.equal(die?.attributes['exitCode'], '137');
    assert.ok(evs.some((e) => e.action === 'oom'));
    const planned = evs.find((e) => e.action === 'restart-scheduled');
    assert.equal(planned?.attributes['reason'], 'oom');
    await d.berthOk(['rm', '-f', id]);
  });

  it('a restart by the monitor keeps limits changed by update', async () => {
    const id = await d.runDetached([
      '--restart',
      'always',
      '-m',
      '64m',
      'busybox',
      'sleep',
      '1000',
    ]);
    await d.berthOk(['update', '-m', '96m', id]);
    const pid = (await d.inspect<Inspect>(id)).State.Pid;
    process.kill(pid, 'SIGKILL');
    await waitForValue('restarted', async () => {
      const x = await d.inspect<Inspect>(id);
      return x.State.Status === 'running' && x.State.Pid !== pid ? true : undefined;
    });
    const limit = readFileSync(`/sys/fs/cgroup/memory/berth/${id}/memory.limit_in_bytes`, 'utf8');
    assert.equal(Number(limit), 96 * 1024 * 1024);
    await d.berthOk(['rm', '-f', id]);
  });

  it('refuses bad policies with the field named, and --rm with a policy', async () => {
    const cases: [string[], RegExp][] = [
      [['--restart', 'sometimes'], /restartPolicy\.name/],
      [['--restart', 'always:3'], /maximumRetryCount/],
      [['--restart', 'on-failure:x'], /restart/],
      [['--restart', 'always', '--restart-factor', '0.5'], /factor/],
      [['--restart', 'always', '--restart-jitter', '2'], /jitter/],
      [['--restart', 'always', '--restart-delay', 'soon'], /restart-delay/],
      [['--restart', 'always', '--rm'], /autoRemove/],
      [['--restart-delay', '1s'], /need a --restart/],
    ];
    for (const [flags, re] of cases) {
      const r = await d.berth(['create', ...flags, 'busybox', 'true']);
      assert.equal(r.code, 125, flags.join(' '));
      assert.match(r.stderr, re, flags.join(' '));
    }
  });
});

describe('restarts while berthd is down', () => {
  let d: TestDaemon;
  before(async () => {
    d = await TestDaemon.start();
  });
  after(async () => {
    await d.destroy();
  });

  it('the monitor restarts on time, once, and the journal has both with their real times', async () => {
    const id = await d.runDetached([
      '--restart',
      'always',
      '--restart-delay',
      '500ms',
      'busybox',
      'sleep',
      '1000',
    ]);
    const first = await d.inspect<Inspect>(id);
    await d.kill9();
    const killedAt = Date.now();
    process.kill(first.State.Pid, 'SIGKILL');
    // Restarted while berthd is still down: a new init under the same monitor.
    const newPid = await waitForValue('the restart while berthd is down', async () => {
      const r = await runCommand('/usr/sbin/runc', [
        '--root',
        join(d.runRoot, 'runc'),
        'state',
        id,
      ]);
      if (r.code !== 0) return undefined;
      const s = JSON.parse(r.stdout) as { pid: number; status: string };
      return s.status === 'running' && s.pid !== first.State.Pid ? s.pid : undefined;
    });
    const restartedAt = Date.now();
    assert.ok(restartedAt - killedAt >= 450, `restarted after ${restartedAt - killedAt} ms`);
    await sleep(300);
    await d.startProcess();
    const back = await waitForValue('adopted and up to date', async () => {
      const x = await d.inspect<Inspect>(id);
      return x.State.Status === 'running' && x.State.Pid === newPid ? x : undefined;
    });
    assert.equal(back.RestartCount, 1);
    const evs = await d.journal(id);
    const dies = evs.filter((e) => e.action === 'die');
    const restarts = evs.filter((e) => e.action === 'restart');
    assert.equal(dies.length, 1);
    assert.equal(restarts.length, 1, 'exactly one restart');
    assert.equal(dies[0]?.attributes['exitCode'], '137');
    const dieT = t(dies[0] as JournalEvent);
    assert.ok(Math.abs(dieT - killedAt) < 1000, 'the exit has its real time');
    const gap = t(restarts[0] as JournalEvent) - dieT;
    assert.ok(gap >= 498 && gap < 2000, `restart ${gap} ms after the exit`);
    assert.ok(t(restarts[0] as JournalEvent) < restartedAt + 50, 'the restart has its real time');
    // Recorded once: a second adoption adds nothing.
    await d.kill9();
    await d.startProcess();
    await sleep(300);
    const again = await d.journal(id);
    assert.equal(again.filter((e) => e.action === 'restart').length, 1);
    assert.equal(again.filter((e) => e.action === 'die').length, 1);
    await d.berthOk(['rm', '-f', id]);
    assert.deepEqual(d.leaks([id]), []);
  });

  it('after a reboot: always and unless-stopped come back, a stopped unless-stopped does not', async () => {
    const always = await d.runDetached(['--restart', 'always', 'busybox', 'sleep', '1000']);
    const unless = await d.runDetached(['--restart', 'unless-stopped', 'busybox', 'sleep', '1000']);
    const stopped = await d.runDetached([
      '--restart',
      'unless-stopped',
      'busybox',
      'sleep',
      '1000',
    ]);
    const none = await d.runDetached(['busybox', 'sleep', '1000']);
    await d.berthOk(['stop', '-t', '0', stopped]);
    // A reboot, as far as berth can tell: berthd, every monitor and container gone, and
    // the run root (a tmpfs) empty.
    await d.kill9();
    const ids = [always, unless, stopped, none];
    for (const id of ids)
      for (const p of monitorPids(id)) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    for (const id of ids)
      await runCommand('/usr/sbin/runc', [
        '--root',
        join(d.runRoot, 'runc'),
        'delete',
        '--force',
        id,
      ]);
    await waitForValue('monitors gone', async () =>
      ids.every((id) => monitorPids(id).every((p) => !pidAlive(p))) ? true : undefined,
    );
    rmSync(join(d.runRoot, 'c'), { recursive: true, force: true });
    assert.ok(!existsSync(join(d.runRoot, 'c')));
    // A reboot unmounts the images' shared roots too: berthd mounts them again as the
    // containers come back.
    const roots = d.mountsUnder().filter((m) => /\/images\/[0-9a-f]{64}\/rootfs$/.test(m));
    assert.ok(roots.length > 0, 'the image root was mounted');
    for (const m of roots) assert.equal((await runCommand('/usr/bin/umount', [m])).code, 0);
    await d.startProcess();
    for (const id of [always, unless])
      await waitForValue(`${id} back`, async () =>
        (await d.inspect<Inspect>(id)).State.Status === 'running' ? true : undefined,
      ).catch(async (e: unknown) => {
        const state = JSON.stringify((await d.inspect<Inspect>(id)).State);
        throw new Error(`${String(e)}; state ${state}; berthd log: ${d.log.slice(-3000)}`);
      });
    await sleep(500);
    assert.equal((await d.inspect<Inspect>(stopped)).State.Status, 'exited');
    assert.equal((await d.inspect<Inspect>(none)).State.Status, 'exited');
    await d.berthOk(['rm', '-f', ...ids]);
    assert.deepEqual(d.leaks(ids), []);
  });
});
