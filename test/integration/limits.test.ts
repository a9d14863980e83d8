// Resource limits on the real kernel, and OOM kills reported for every process in the
// container, not only its pid 1.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestDaemon, waitFor } from '../helpers/daemon.ts';

interface Inspect {
  State: {
    Status: string;
    Running: boolean;
    ExitCode: number;
    OOMKilled: boolean;
    OOMKillCount: number;
  };
}

const cg = (controller: string, id: string, file: string) =>
  readFileSync(`/sys/fs/cgroup/${controller}/berth/${id}/${file}`, 'utf8').trim();

describe('limits and OOM', () => {
  let d: TestDaemon;
  before(async () => {
    d = await TestDaemon.start();
  });
  after(async () => {
    await d.destroy();
  });

  const inspect = (id: string) => d.inspect<Inspect>(id);
  const events = async (id: string) =>
    (await d.berthOk(['events', '--format', '{{.action}} {{.actorId}} {{.time}}']))
      .trim()
      .split('\n')
      .filter((l) => l.includes(id));

  it('applies memory, cpu, pids, cpuset and rlimit limits, seen from inside', async () => {
    const out = await d.berthOk([
      'run',
      '--rm',
      '-m',
      '64m',
      '--memory-reservation',
      '32m',
      '--cpus',
      '0.5',
      '--cpu-shares',
      '512',
      '--pids-limit',
      '50',
      '--cpuset-cpus',
      '0',
      '--ulimit',
      'nofile=1000:2000',
      '--ulimit',
      'nproc=100',
      'busybox',
      'sh',
      '-c',
      'cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes memory/memory.soft_limit_in_bytes cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us cpu/cpu.shares pids/pids.max cpuset/cpuset.cpus; ulimit -Sn; ulimit -Hn; ulimit -u',
    ]);
    assert.deepEqual(out.trim().split('\n'), [
      String(64 * 2 ** 20),
      String(32 * 2 ** 20),
      '50000',
      '100000',
      '512',
      '50',
      '0',
      '1000',
      '2000',
      '100',
    ]);
  });

  it('reports an OOM kill of pid 1: exit 137, OOMKilled, an oom event at once', async () => {
    const id = await d.runDetached([
      '-m',
      '16m',
      'busybox',
      'sh',
      '-c',
      'exec tail -c 200m /dev/zero',
    ]);
    assert.equal((await d.berthOk(['wait', id])).trim(), '137');
    const i = await inspect(id);
    assert.equal(i.State.OOMKilled, true);
    assert.ok(i.State.OOMKillCount >= 1);
    const ev = await events(id);
    const oom = ev.find((l) => l.startsWith('oom '));
    const die = ev.find((l) => l.startsWith('die '));
    assert.ok(oom, ev.join('\n'));
    assert.ok(die);
    // The oom event carries the kernel's moment, not when berthd got round to it.
    assert.ok(Date.parse(oom.split(' ')[2] ?? '') <= Date.parse(die.split(' ')[2] ?? '') + 1000);
    await d.berthOk(['rm', id]);
  });

  it('reports an OOM kill of a child while pid 1 lives on', async () => {
    const id = await d.runDetached([
      '-m',
      '16m',
      'busybox',
      'sh',
      '-c',
      'head -c 200m /dev/zero | tail -c 100m >/dev/null; echo survived; sleep 300',
    ]);
    await waitFor(
      async () => (await events(id)).some((l) => l.startsWith('oom ')),
      10_000,
      'an oom event',
    );
    await waitFor(
      () => readFileSync(`${d.root}/logs/${id}/container.log`, 'utf8').includes('survived'),
      5000,
      'pid 1 goes on',
    );
    const i = await inspect(id);
    assert.equal(i.State.Running, true);
    assert.ok(i.State.OOMKillCount >= 1);
    await d.berthOk(['rm', '-f', id]);
  });

  it('holds a busy loop to about half a core with --cpus 0.5', async () => {
    const id = await d.runDetached(['--cpus', '0.5', 'busybox', 'sh', '-c', 'while :; do :; done']);
    await sleep(300);
    const u0 = Number(cg('cpuacct', id, 'cpuacct.usage'));
    const t0 = process.hrtime.bigint();
    await sleep(2000);
    const used = Number(cg('cpuacct', id, 'cpuacct.usage')) - u0;
    const wall = Number(process.hrtime.bigint() - t0);
    const cores = used / wall;
    assert.ok(cores > 0.3 && cores < 0.7, `used ${cores.toFixed(2)} cores`);
    await d.berthOk(['rm', '-f', id]);
  });

  it('stops a fork bomb at --pids-limit and the host stays responsive', async () => {
    const id = await d.runDetached([
      '--pids-limit',
      '50',
      'busybox',
      'sh',
      '-c',
      '(while true; do sleep 300 & done) 2>/dev/null & exec sleep 300',
    ]);
    await sleep(1000);
    const current = Number(cg('pids', id, 'pids.current'));
    assert.ok(current <= 50 && current >= 40, `pids.current ${current}`);
    assert.equal((await d.berth(['ps', '-q'])).code, 0);
    await d.berthOk(['rm', '-f', id]);
  });

  it('update changes the limits of a running container in place, and keeps them', async () => {
    const id = await d.runDetached(['-m', '64m', 'busybox', 'sleep', '300']);
    await d.berthOk(['update', '-m', '128m', '--cpus', '1', '--pids-limit', '77', id]);
    assert.equal(cg('memory', id, 'memory.limit_in_bytes'), String(128 * 2 ** 20));
    assert.equal(cg('cpu', id, 'cpu.cfs_quota_us'), '100000');
    assert.equal(cg('pids', id, 'pids.max'), '77');
    // Kept for the next start.
    await d.berthOk(['restart', '-t', '0', id]);
    assert.equal(cg('memory', id, 'memory.limit_in_bytes'), String(128 * 2 ** 20));
    assert.equal(cg('pids', id, 'pids.max'), '77');
    await d.berthOk(['rm', '-f', id]);
  });

  it('refuses limits this host cannot give, naming the field, and creates nothing', async () => {
    for (const [args, msg] of [
      [['-m', '1k'], /Invalid memory: .*minimum of 6m/],
      [['-m', 'lots'], /Invalid memory: "lots" is not a size/],
      [['--cpus', '99'], /Invalid cpus: 99 must be from 0.01 to \d+/],
      [['--cpuset-cpus', '63'], /Invalid cpuset-cpus: CPU 63 is not available/],
      [
        ['--ulimit', 'nofile=10:99999999'],
        /Invalid ulimit nofile: hard limit 99999999 is above this host's/,
      ],
      [['--ulimit', 'bogus=1'], /Invalid ulimit: unknown limit "bogus"/],
      [
        ['-m', '64m', '--memory-swap', '32m'],
        /Invalid memory-swap: must be at least the memory limit/,
      ],
      [
        ['-m', '64m', '--memory-reservation', '128m'],
        /Invalid memory-reservation: must not be above/,
      ],
    ] as const) {
      const r = await d.berth(['run', ...args, 'busybox', 'true']);
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, msg);
    }
    assert.equal((await d.berthOk(['ps', '-aq'])).trim(), '');
    const u = await d.berth(['update', '--cpus', '0.5', 'ghost']);
    assert.match(u.stderr, /No such container: ghost/);
  });
});
