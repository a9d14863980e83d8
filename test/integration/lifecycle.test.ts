import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MAIN, pidAlive, runCommand, TestDaemon, waitFor } from '../helpers/daemon.ts';

interface Inspect {
  Id: string;
  Name: string;
  State: {
    Status: string;
    Running: boolean;
    Pid: number;
    ExitCode: number;
    StartedAt: string;
    FinishedAt: string;
    OOMKilled: boolean;
  };
  Config: { Cmd: string[]; Env: string[]; Hostname: string; Labels: Record<string, string> };
  HostConfig: Record<string, unknown>;
  RestartCount: number;
  Mounts: unknown[];
  NetworkSettings: unknown;
}

describe('container lifecycle', () => {
  let d: TestDaemon;
  before(async () => {
    d = await TestDaemon.start();
  });
  after(async () => {
    await d.destroy();
  });

  const inspect = async (n: string) => JSON.parse(await d.berthOk(['inspect', n]))[0] as Inspect;

  it('attached run streams stdout and stderr apart and exits with the container code', async () => {
    const r = await d.berth([
      'run',
      '--rm',
      'busybox',
      'sh',
      '-c',
      'echo to-out; echo to-err >&2; exit 3',
    ]);
    assert.equal(r.code, 3);
    assert.equal(r.stdout, 'to-out\n');
    assert.equal(r.stderr, 'to-err\n');
    const ps = await d.berthOk(['ps', '-a', '-q']);
    assert.equal(ps, '', '--rm removed the container');
  });

  it('run -i feeds stdin to the container and half-closes it at EOF', async () => {
    const r = await d.berth(['run', '-i', '--rm', 'busybox', 'sh', '-c', 'cat; echo after-eof'], {
      input: 'one\ntwo\n',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'one\ntwo\nafter-eof\n');
  });

  it('records every state change as a numbered event', async () => {
    const before = (await d.berthOk(['events', '--format', '{{.seq}}']))
      .trim()
      .split('\n')
      .map(Number);
    const since = before[before.length - 1] ?? 0;
    const id = await d.runDetached(['busybox', 'true']);
    await d.berthOk(['wait', id]);
    await d.berthOk(['rm', id]);
    const lines = (await d.berthOk(['events', '--since', String(since), '--format', 'json']))
      .trim()
      .split('\n');
    const evs = lines.map(
      (l) =>
        JSON.parse(l) as {
          seq: number;
          action: string;
          actorId: string;
          attributes: Record<string, string>;
        },
    );
    const mine = evs.filter((e) => e.actorId === id);
    assert.deepEqual(
      mine.map((e) => e.action),
      ['create', 'start', 'die', 'destroy'],
    );
    assert.equal(mine.find((e) => e.action === 'die')?.attributes['exitCode'], '0');
    const seqs = evs.map((e) => e.seq);
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => since + 1 + i),
      'gapless and ordered',
    );
  });

  it('passes env, workdir, user, hostname and labels into the container', async () => {
    const r = await d.berth([
      'run',
      '--rm',
      '-e',
      'FOO=bar',
      '-w',
      '/tmp',
      '-u',
      'nobody',
      '-h',
      'probe',
      '-l',
      'a=b',
      'busybox',
      'sh',
      '-c',
      'echo $FOO $(pwd) $(id -u):$(id -g) $(hostname)',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'bar /tmp 65534:65534 probe');
  });

  it('runs detached; ps and inspect show the truth', async () => {
    // pid 1 has no default action for SIGTERM, so the probe traps it (as an init would).
    const id = await d.runDetached([
      '--name',
      'sleeper',
      '-l',
      'role=test',
      'busybox',
      'sh',
      '-c',
      "trap 'exit 143' TERM; sleep 300 & wait",
    ]);
    assert.match(id, /^[0-9a-f]{64}$/);
    const i = await inspect('sleeper');
    assert.equal(i.Id, id);
    assert.equal(i.Name, '/sleeper');
    assert.equal(i.State.Status, 'running');
    assert.equal(i.State.Running, true);
    assert.ok(i.State.Pid > 0 && pidAlive(i.State.Pid));
    assert.ok(Date.parse(i.State.StartedAt) > Date.now() - 60_000);
    assert.equal(i.State.FinishedAt, '0001-01-01T00:00:00Z');
    assert.deepEqual(i.Config.Cmd, ['sh', '-c', "trap 'exit 143' TERM; sleep 300 & wait"]);
    assert.equal(i.Config.Labels['role'], 'test');
    assert.equal(i.RestartCount, 0);
    for (const k of ['HostConfig', 'Mounts', 'NetworkSettings']) assert.ok(k in i, k);
    // The container's pid 1 is not berthd's child, and its monitor is not in berthd's session.
    const stat = readFileSync(`/proc/${i.State.Pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    assert.notEqual(Number(stat[1]), d.pid, 'ppid is not berthd');
    assert.notEqual(
      Number(stat[3]),
      Number(readFileSync(`/proc/${d.pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[3]),
      'not in berthd session',
    );

    // The monitor lives in berth's monitor cgroup: its cost is charged neither to the
    // container nor to berthd (whose service manager may kill its own cgroup).
    const monitorPid = Number(
      (await d.berthOk(['inspect', '-f', '{{.MonitorPid}}', 'sleeper'])).trim(),
    );
    const groups = readFileSync(`/proc/${monitorPid}/cgroup`, 'utf8');
    assert.match(groups, /:memory:\/berth\.monitors$/m);
    assert.doesNotMatch(groups, new RegExp(id));
    assert.equal(
      (await d.berthOk(['inspect', '-f', '{{.State.Pid}}', 'sleeper'])).trim(),
      String(i.State.Pid),
    );
    assert.deepEqual(
      JSON.parse(await d.berthOk(['inspect', '-f', '{{json .Config.Cmd}}', 'sleeper'])),
      i.Config.Cmd,
    );
    assert.equal((await d.berthOk(['ps', '-q', '--no-trunc'])).trim(), id);
    assert.equal(
      (await d.berthOk(['ps', '--format', '{{.Names}} {{.State}}'])).trim(),
      'sleeper running',
    );
    const rows = (await d.berthOk(['ps', '--format', 'json']))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { ID: string });
    assert.equal(rows[0]?.ID, id.slice(0, 12));
    assert.equal(
      (await d.berthOk(['ps', '-q', '--filter', 'label=role=test'])).trim(),
      id.slice(0, 12),
    );
    assert.equal((await d.berthOk(['ps', '-q', '--filter', 'label=role=other'])).trim(), '');
    // Any unique prefix works.
    assert.equal((await inspect(id.slice(0, 5))).Id, id);

    const top = await d.berthOk(['top', 'sleeper']);
    assert.match(top, /sleep 300/);

    const t0 = Date.now();
    await d.berthOk(['stop', 'sleeper']);
    assert.ok(Date.now() - t0 < 5000, 'sleep dies on SIGTERM at once');
    const s = await inspect('sleeper');
    assert.equal(s.State.Status, 'exited');
    assert.equal(s.State.ExitCode, 143);
    assert.ok(Date.parse(s.State.FinishedAt) >= Date.parse(s.State.StartedAt));
    assert.ok(!pidAlive(i.State.Pid));
    await d.berthOk(['rm', 'sleeper']);
    assert.deepEqual(d.leaks([id]), []);
  });

  it('stop falls back to SIGKILL after the timeout when TERM is ignored', async () => {
    const id = await d.runDetached([
      'busybox',
      'sh',
      '-c',
      "trap '' TERM; echo ready; while true; do sleep 1; done",
    ]);
    await waitFor(
      () => readFileSync(`${d.root}/logs/${id}/container.log`, 'utf8').includes('ready'),
      10_000,
      'ready',
    );
    const t0 = Date.now();
    await d.berthOk(['stop', '-t', '1', id]);
    const took = Date.now() - t0;
    assert.ok(took >= 900, `waited for the timeout (${took} ms)`);
    const i = await inspect(id);
    assert.equal(i.State.ExitCode, 137);
    await d.berthOk(['rm', id]);
  });

  it('kill -s delivers the named signal, and start restarts an exited container', async () => {
    const id = await d.runDetached([
      'busybox',
      'sh',
      '-c',
      "trap 'exit 42' USR1; while true; do sleep 0.1; done",
    ]);
    await new Promise((r) => setTimeout(r, 300));
    await d.berthOk(['kill', '-s', 'USR1', id]);
    assert.equal((await d.berthOk(['wait', id])).trim(), '42');
    const first = await inspect(id);
    await d.berthOk(['start', id]);
    const again = await inspect(id);
    assert.equal(again.State.Running, true);
    assert.notEqual(again.State.Pid, first.State.Pid);
    await d.berthOk(['kill', id]);
    assert.equal((await d.berthOk(['wait', id])).trim(), '137');
    await d.berthOk(['rm', id]);
  });

  it('rm -f removes a running container and everything it had', async () => {
    const id = await d.runDetached(['busybox', 'sleep', '300']);
    const pid = (await inspect(id)).State.Pid;
    const rmRunning = await d.berth(['rm', id]);
    assert.equal(rmRunning.code, 125);
    assert.match(rmRunning.stderr, /running/);
    await d.berthOk(['rm', '-f', id]);
    assert.ok(!pidAlive(pid));
    assert.deepEqual(d.leaks([id]), []);
    assert.equal((await d.berthOk(['ps', '-aq'])).includes(id.slice(0, 12)), false);
  });

  it('exec runs in the container and propagates its exit code', async () => {
    const id = await d.runDetached(['-e', 'X=1', 'busybox', 'sleep', '300']);
    const r = await d.berth([
      'exec',
      '-e',
      'Y=2',
      '-w',
      '/tmp',
      id,
      'sh',
      '-c',
      'echo $X$Y $(pwd); echo e >&2; exit 5',
    ]);
    assert.equal(r.code, 5);
    assert.equal(r.stdout, '12 /tmp\n');
    assert.equal(r.stderr, 'e\n');
    const i = await d.berth(['exec', '-i', id, 'cat'], { input: 'piped through stdin\n' });
    assert.equal(i.code, 0);
    assert.equal(i.stdout, 'piped through stdin\n');
    const nf = await d.berth(['exec', id, 'no-such-command']);
    assert.equal(nf.code, 127, nf.stderr);
    assert.match(nf.stderr, /no-such-command/);
    await d.berthOk(['rm', '-f', id]);
  });

  it('-it gives an interactive terminal, with resize, for run and exec', async () => {
    // script(1) provides the pseudo-terminal the CLI runs on.
    const env = { ...process.env, BERTH_HOST: `unix://${d.socket}` };
    const cmd = `stty rows 33 cols 99; ${process.execPath} -- ${MAIN} run -it --rm busybox sh -c 'tty; stty size; exit 7'`;
    const r = await runCommand('script', ['-qec', cmd, '/dev/null'], { env });
    assert.equal(r.code, 7, r.stdout + r.stderr);
    assert.match(r.stdout, /\/dev\/pts\/\d+/);
    assert.match(r.stdout, /33 99/);

    const id = await d.runDetached(['busybox', 'sleep', '300']);
    const cmd2 = `stty rows 21 cols 77; ${process.execPath} -- ${MAIN} exec -it ${id} sh -c 'tty; stty size; exit 4'`;
    const e = await runCommand('script', ['-qec', cmd2, '/dev/null'], { env });
    assert.equal(e.code, 4, e.stdout + e.stderr);
    assert.match(e.stdout, /\/dev\/pts\/\d+/);
    assert.match(e.stdout, /21 77/);
    await d.berthOk(['rm', '-f', id]);
  });

  it('--network none has only lo; --network host sees the host and takes its name', async () => {
    const none = await d.berthOk([
      'run',
      '--rm',
      '--network',
      'none',
      'busybox',
      'sh',
      '-c',
      "ip -o link | cut -d: -f2 | tr -d ' '",
    ]);
    assert.equal(none.trim(), 'lo');
    const hostLinks = (await runCommand('ip', ['-o', 'link'])).stdout.trim().split('\n').length;
    const host = await d.berthOk([
      'run',
      '--rm',
      '--network',
      'host',
      'busybox',
      'sh',
      '-c',
      'ip -o link | wc -l; hostname',
    ]);
    const [links, name] = host.trim().split('\n');
    // Other tests add and remove veths meanwhile: about the same, not exactly.
    assert.ok(Math.abs(Number(links) - hostLinks) <= 8, `${links} links vs ${hostLinks}`);
    assert.equal(name, (await runCommand('hostname', [])).stdout.trim());
  });

  it('resizes a running container terminal through the API', async () => {
    const id = await d.runDetached([
      '-t',
      'busybox',
      'sh',
      '-c',
      'while true; do stty size; sleep 0.1; done',
    ]);
    await d.client.resizeContainer(id, 42, 123);
    const log = `${d.root}/logs/${id}/container.log`;
    await waitFor(() => readFileSync(log, 'utf8').includes('42 123'), 5000, 'new size inside');
    await d.berthOk(['rm', '-f', id]);
  });

  it('attach: a viewer leaving does not close stdin for a typing client; rm ends a waiting attach', async () => {
    const id = await d.runDetached([
      '-i',
      'busybox',
      'sh',
      '-c',
      'while read l; do echo got:$l; done; echo stdin-closed',
    ]);
    const viewer = await d.client.attachContainer(id, false);
    await sleep(200);
    viewer.destroy();
    await sleep(300);
    const typist = await d.client.attachContainer(id, true);
    let seen = '';
    typist.on('data', (b: Buffer) => (seen += b.toString('latin1')));
    typist.write('hello\n');
    await waitFor(() => seen.includes('got:hello'), 5000, 'echo through stdin');
    typist.end();
    await waitFor(() => seen.includes('stdin-closed'), 5000, 'stdin closed by the typist');
    assert.equal((await d.berthOk(['wait', id])).trim(), '0');
    await d.berthOk(['rm', id]);

    const created = (await d.berthOk(['create', 'busybox', 'true'])).trim();
    const waiting = await d.client.attachContainer(created, false);
    const ended = new Promise((r) => waiting.once('close', r));
    await d.berthOk(['rm', created]);
    await ended;
  });

  it('kill reaches a container while a stop waits out its timeout', async () => {
    const id = await d.runDetached([
      'busybox',
      'sh',
      '-c',
      "trap '' TERM; while true; do sleep 0.1; done",
    ]);
    await sleep(300);
    const t0 = Date.now();
    const stopping = d.berth(['stop', '-t', '30', id]);
    await sleep(500);
    await d.berthOk(['kill', id]);
    const r = await stopping;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - t0 < 20_000, 'the stop ended with the kill, not at its 30 s timeout');
    assert.equal(
      (JSON.parse(await d.berthOk(['inspect', id]))[0] as { State: { ExitCode: number } }).State
        .ExitCode,
      137,
    );
    await d.berthOk(['rm', id]);
  });

  it('applies safe defaults: read-only root, dropped capabilities, pids limit, masked paths', async () => {
    const r = await d.berth([
      'run',
      '--rm',
      'busybox',
      'sh',
      '-c',
      'touch /x 2>/dev/null && echo rw || echo ro; touch /tmp/x && echo tmp-ok; grep CapBnd /proc/self/status; cat /sys/fs/cgroup/pids/pids.max; grep NoNewPrivs /proc/self/status; cat /proc/keys /proc/timer_list | wc -c; echo 1 > /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable || echo sysrq-ro',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines[0], 'ro');
    assert.equal(lines[1], 'tmp-ok');
    assert.match(lines[2] ?? '', /CapBnd:\s+00000000a80425fb/);
    assert.equal(lines[3], '4096');
    assert.match(lines[4] ?? '', /NoNewPrivs:\s+1/);
    assert.equal(lines[5], '0');
    assert.equal(lines[6], 'sysrq-ro');
  });
});
