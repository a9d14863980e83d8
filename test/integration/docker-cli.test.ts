// The real docker CLI against berthd's Docker-compatible socket (DOCKER_HOST=unix://...):
// every command of the issue, the stream details clients break on (headers flushed at
// once, framing, the hijack's half-close, logs -f ending with the container), events that
// reach back across a berthd restart, and bad requests that get Docker's error shape and
// leave nothing behind. BERTH_TEST_DOCKER names another docker binary (default: Debian's
// /usr/bin/docker; the docker 28 CLI at /usr/local/bin/docker, if there, gets a smoke run).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand, TestDaemon, waitFor, type RunResult } from '../helpers/daemon.ts';

const DOCKER =
  process.env['BERTH_TEST_DOCKER'] ??
  (existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker');
const DOCKER28 = '/usr/local/bin/docker';
const SCRIPT = '/usr/bin/script';

interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function http(socket: string, method: string, path: string, body?: unknown): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        socketPath: socket,
        method,
        path,
        headers: data
          ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) }
          : {},
      },
      (res) => {
        let text = '';
        res.on('data', (b: Buffer) => (text += b.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }),
        );
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

// Docker's Unix time with a fraction, as the CLI sends it.
const unix = (ms: number) => (ms / 1000).toFixed(9);

// The setup installs the docker CLI (scripts/install.sh); a machine without one fails here.
describe('docker CLI against berthd', () => {
  let d: TestDaemon;
  let cfg: string;
  let host: string;

  before(async () => {
    d = await TestDaemon.start();
    // Its own config dir: the CLI neither reads nor writes the user's ~/.docker.
    cfg = await mkdtemp('/tmp/bt-dockercfg-');
    host = await mkdtemp('/tmp/bt-dockerhost-');
  });
  after(async () => {
    await d.destroy();
    await rm(cfg, { recursive: true, force: true });
    await rm(host, { recursive: true, force: true });
  });

  const env = (bin = DOCKER) => ({
    ...process.env,
    DOCKER_HOST: d.dockerHost,
    DOCKER_CONFIG: cfg,
    PATH: `${bin.slice(0, bin.lastIndexOf('/'))}:${process.env['PATH'] ?? ''}`,
  });
  const docker = (args: readonly string[], o: { input?: string; timeoutMs?: number } = {}) =>
    runCommand(DOCKER, args, { ...o, env: env() });
  const ok = async (args: readonly string[], o: { input?: string } = {}): Promise<string> => {
    const r = await docker(args, o);
    assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  // Through a pseudo-terminal, as a user at a terminal runs it.
  const tty = (cmd: string, input: string, bin = DOCKER): Promise<RunResult> =>
    runCommand(SCRIPT, ['-qec', `${bin} ${cmd}`, '/dev/null'], {
      input,
      env: env(bin),
      timeoutMs: 30_000,
    });
  const inspect = async <T>(ref: string): Promise<T> =>
    (JSON.parse(await ok(['inspect', ref])) as T[])[0] as T;

  it('negotiates API 1.41 through /_ping and prints version and info', async () => {
    for (const method of ['GET', 'HEAD']) {
      const r = await http(d.dockerSocket, method, '/_ping');
      assert.equal(r.status, 200);
      assert.equal(r.headers['api-version'], '1.41');
      assert.equal(r.headers['ostype'], 'linux');
      assert.equal(r.headers['docker-experimental'], 'false');
      assert.equal(r.headers['builder-version'], '1');
      assert.equal(r.body, method === 'GET' ? 'OK' : '');
    }
    assert.equal((await http(d.dockerSocket, 'GET', '/v1.30/_ping')).status, 200);
    assert.equal(
      (await ok(['version', '--format', '{{.Server.APIVersion}} {{.Server.Os}}'])).trim(),
      '1.41 linux',
    );
    const info = await docker(['info']);
    assert.equal(info.code, 0, info.stderr);
    assert.doesNotMatch(info.stderr, /error/i);
    assert.equal(
      (
        await ok([
          'info',
          '--format',
          '{{.Driver}} {{.CgroupDriver}} {{.DefaultRuntime}} {{.OSType}} {{.Swarm.LocalNodeState}}',
        ])
      ).trim(),
      'overlay2 cgroupfs runc linux inactive',
    );
    assert.match(await ok(['info', '--format', '{{.CgroupVersion}} {{.NCPU}}']), /^[12] \d+\n$/);
    // The socket is the main socket's kind: the same owner and mode.
    const main = statSync(d.socket);
    const dock = statSync(d.dockerSocket);
    assert.ok(dock.isSocket());
    assert.equal(dock.mode & 0o777, main.mode & 0o777);
    assert.equal(dock.gid, main.gid);
  });

  it('run: attached with the exit code and apart streams; -i half-closes stdin; --rm', async () => {
    const r = await docker([
      'run',
      '--rm',
      'busybox',
      'sh',
      '-c',
      'echo to-out; echo to-err >&2; exit 3',
    ]);
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stdout, 'to-out\n');
    assert.equal(r.stderr, 'to-err\n');
    const i = await docker(['run', '-i', '--rm', 'busybox', 'sh', '-c', 'cat; echo after-eof'], {
      input: 'one\ntwo\n',
    });
    assert.equal(i.code, 0, i.stderr);
    assert.equal(i.stdout, 'one\ntwo\nafter-eof\n');
    const nf = await docker(['run', '--rm', 'busybox', 'no-such-command']);
    assert.equal(nf.code, 127, nf.stderr);
    assert.match(nf.stderr, /executable file not found/);
    assert.equal(await ok(['ps', '-aq']), '', '--rm removed them all');
  });

  it('run -it through a pseudo-terminal, and exec -it', async () => {
    const r = await tty('run -it --rm busybox sh', 'tty; echo in-$((40+2)); exit 5\n');
    assert.equal(r.code, 5, r.stdout);
    assert.match(r.stdout, /\/dev\/pts\/\d+/);
    assert.match(r.stdout, /in-42/);
    await ok(['run', '-d', '--name', 'ex', 'busybox', 'sleep', '300']);
    const e = await tty('exec -it ex sh', 'tty; echo ex-$((1+1)); exit 6\n');
    assert.equal(e.code, 6, e.stdout);
    assert.match(e.stdout, /\/dev\/pts\/\d+/);
    assert.match(e.stdout, /ex-2/);
    // exec without a terminal: the exit code, stdin, and a slow command the CLI's
    // half-close does not cut short.
    const x = await docker(['exec', 'ex', 'sh', '-c', 'sleep 1; echo slow; exit 4']);
    assert.equal(x.code, 4);
    assert.equal(x.stdout, 'slow\n');
    assert.equal(await ok(['exec', '-i', 'ex', 'cat'], { input: 'piped\n' }), 'piped\n');
    assert.equal(
      await ok(['exec', '-e', 'A=b', '-w', '/tmp', 'ex', 'sh', '-c', 'echo $A $PWD']),
      'b /tmp\n',
    );
    const d1 = await ok(['exec', '-d', 'ex', 'sh', '-c', 'echo detached > /tmp/d']);
    assert.equal(d1, '');
    await waitFor(
      async () => (await docker(['exec', 'ex', 'cat', '/tmp/d'])).stdout === 'detached\n',
    );
    await ok(['rm', '-f', 'ex']);
  });

  it('run -d with -e, -l, --name, -p, -P, --restart, --memory, --cpus, and inspect, port, ps', async () => {
    const id = (
      await ok([
        'run',
        '-d',
        '--name',
        'web',
        '-e',
        'GREETING=hello',
        '-l',
        'suite=docker-cli',
        '-l',
        'tier=web',
        '-p',
        '127.0.0.1::8080',
        '-p',
        '9090',
        '--restart',
        'on-failure:3',
        '--memory',
        '64m',
        '--cpus',
        '0.5',
        'busybox',
        'sleep',
        '300',
      ])
    ).trim();
    assert.match(id, /^[0-9a-f]{64}$/);
    interface Insp {
      Id: string;
      Name: string;
      State: { Status: string; Running: boolean; Pid: number };
      Config: { Env: string[]; Labels: Record<string, string>; Image: string; Tty: boolean };
      HostConfig: {
        Memory: number;
        NanoCpus: number;
        RestartPolicy: { Name: string; MaximumRetryCount: number };
        ReadonlyRootfs: boolean;
        NetworkMode: string;
      };
      NetworkSettings: {
        Ports: Record<string, { HostIp: string; HostPort: string }[]>;
        Networks: Record<string, { IPAddress: string; NetworkID: string }>;
      };
    }
    const c = await inspect<Insp>('web');
    assert.equal(c.Id, id);
    assert.equal(c.Name, '/web');
    assert.equal(c.State.Status, 'running');
    assert.ok(c.Config.Env.includes('GREETING=hello'));
    assert.equal(c.Config.Labels['tier'], 'web');
    assert.equal(c.HostConfig.Memory, 64 * 1024 * 1024);
    assert.equal(c.HostConfig.NanoCpus, 500_000_000);
    assert.deepEqual(c.HostConfig.RestartPolicy, {
      ...c.HostConfig.RestartPolicy,
      Name: 'on-failure',
      MaximumRetryCount: 3,
    });
    // Docker's default on this surface: a writable (bounded) root, bridge networking.
    assert.equal(c.HostConfig.ReadonlyRootfs, false);
    assert.equal(c.HostConfig.NetworkMode, 'bridge');
    assert.match(c.NetworkSettings.Networks['bridge']?.IPAddress ?? '', /^10\.215\./);
    assert.match(c.NetworkSettings.Networks['bridge']?.NetworkID ?? '', /^[0-9a-f]{64}$/);
    const p8080 = c.NetworkSettings.Ports['8080/tcp']?.[0];
    assert.equal(p8080?.HostIp, '127.0.0.1');
    const port = await ok(['port', 'web', '8080']);
    assert.equal(port.trim(), `127.0.0.1:${p8080?.HostPort}`);
    const all = await ok(['port', 'web']);
    assert.match(all, /^9090\/tcp -> 0\.0\.0\.0:\d+$/m);
    assert.equal(await ok(['exec', 'web', 'sh', '-c', 'echo $GREETING']), 'hello\n');
    // ps: -q, --filter in Docker's forms, --format.
    assert.equal((await ok(['ps', '-q', '--no-trunc', '--filter', 'label=tier=web'])).trim(), id);
    assert.equal(await ok(['ps', '-q', '--filter', 'label=tier=db']), '');
    assert.equal(
      (
        await ok(['ps', '--filter', 'name=^/web$', '--format', '{{.Names}}|{{.Image}}|{{.State}}'])
      ).trim(),
      'web|busybox|running',
    );
    assert.equal(
      (await ok(['ps', '-q', '--filter', 'ancestor=busybox', '--filter', 'status=running'])).trim(),
      id.slice(0, 12),
    );
    assert.equal((await ok(['ps', '-q', '--filter', 'publish=8080'])).trim(), id.slice(0, 12));
    assert.match(await ok(['ps', '--format', '{{.Ports}}']), /127\.0\.0\.1:\d+->8080\/tcp/);
    const P = (
      await ok(['run', '-d', '-P', '--expose', '7000', '--name', 'pub', 'busybox', 'sleep', '300'])
    ).trim();
    assert.match(await ok(['port', P]), /^7000\/tcp -> 0\.0\.0\.0:\d+$/m);
    await ok(['rm', '-f', 'pub', 'web']);
  });

  it('--read-only, --tmpfs, -v binds and named volumes, --network none and host', async () => {
    assert.equal(
      await ok(['run', '--rm', 'busybox', 'sh', '-c', 'echo rw > /f && cat /f']),
      'rw\n',
    );
    const ro = await docker(['run', '--rm', '--read-only', 'busybox', 'sh', '-c', 'echo x > /f']);
    assert.notEqual(ro.code, 0);
    assert.match(ro.stderr, /Read-only file system/);
    assert.equal(
      await ok([
        'run',
        '--rm',
        '--read-only',
        '--tmpfs',
        '/scratch:size=1m',
        'busybox',
        'sh',
        '-c',
        'echo t > /scratch/f && cat /scratch/f && df -k /scratch | awk "NR==2{print \\$2}"',
      ]),
      't\n1024\n',
    );
    mkdirSync(join(host, 'src'));
    writeFileSync(join(host, 'src', 'a'), 'from-host\n');
    assert.equal(
      await ok(['run', '--rm', '-v', `${join(host, 'src')}:/h:ro`, 'busybox', 'cat', '/h/a']),
      'from-host\n',
    );
    const w = await docker([
      'run',
      '--rm',
      '-v',
      `${join(host, 'src')}:/h:ro`,
      'busybox',
      'touch',
      '/h/b',
    ]);
    assert.notEqual(w.code, 0);
    await ok(['run', '--rm', '-v', 'dcli-vol:/v', 'busybox', 'sh', '-c', 'echo kept > /v/x']);
    assert.equal(
      await ok(['run', '--rm', '-v', 'dcli-vol:/v', 'busybox', 'cat', '/v/x']),
      'kept\n',
    );
    // An anonymous volume goes with rm -v.
    const anon = (await ok(['create', '-v', '/data', 'busybox', 'true'])).trim();
    const mounts = (
      await inspect<{ Mounts: { Type: string; Name: string; Destination: string }[] }>(anon)
    ).Mounts;
    const vol = mounts.find((m) => m.Destination === '/data');
    assert.equal(vol?.Type, 'volume');
    assert.match(vol?.Name ?? '', /^[0-9a-f]{64}$/);
    await ok(['rm', '-v', anon]);
    const vols = await http(d.socket, 'GET', '/v1/volumes');
    assert.doesNotMatch(vols.body, new RegExp(vol?.Name ?? 'x'));
    assert.match(vols.body, /dcli-vol/);
    assert.equal(
      await ok(['run', '--rm', '--network', 'none', 'busybox', 'sh', '-c', 'ls /sys/class/net']),
      'lo\n',
    );
    assert.equal(
      (await ok(['run', '--rm', '--network', 'host', 'busybox', 'hostname'])).trim(),
      (await runCommand('/bin/hostname', [])).stdout.trim(),
    );
  });

  it('--health-* makes the container healthy, as ps and inspect show', async () => {
    await ok([
      'run',
      '-d',
      '--name',
      'hc',
      '--health-cmd',
      'test -e /tmp/ready',
      '--health-interval',
      '300ms',
      '--health-retries',
      '2',
      'busybox',
      'sh',
      '-c',
      'sleep 1; touch /tmp/ready; sleep 300',
    ]);
    const health = async () =>
      (await ok(['inspect', '-f', '{{.State.Health.Status}}', 'hc'])).trim();
    await waitFor(async () => (await health()) === 'healthy', 20_000, 'healthy');
    assert.match(await ok(['ps', '--filter', 'name=hc', '--format', '{{.Status}}']), /\(healthy\)/);
    assert.equal((await ok(['ps', '-q', '--filter', 'health=healthy'])).trim().length, 12);
    await ok(['rm', '-f', 'hc']);
  });

  it('create, start -a, attach, wait, stop, kill, restart, rename, update, top, rm -f', async () => {
    const id = (
      await ok(['create', '--name', 'cr', 'busybox', 'sh', '-c', 'echo created-out; exit 7'])
    ).trim();
    assert.equal((await inspect<{ State: { Status: string } }>(id)).State.Status, 'created');
    const s = await docker(['start', '-a', 'cr']);
    assert.equal(s.stdout, 'created-out\n');
    assert.equal(s.code, 7);
    assert.equal((await ok(['wait', 'cr'])).trim(), '7');
    await ok(['rm', 'cr']);

    // attach to a running container: its output from then on; the CLI's half-close at
    // once (it sends no stdin) does not end the attach.
    await ok([
      'run',
      '-d',
      '--name',
      'ticker',
      'busybox',
      'sh',
      '-c',
      'while :; do echo tick; sleep 0.3; done',
    ]);
    const a = await docker(['attach', '--sig-proxy=false', 'ticker'], { timeoutMs: 2000 });
    assert.match(a.stdout, /tick\ntick\n/);
    // attach with stdin to a -i container, then its exit closes the stream.
    await ok(['run', '-d', '-i', '--name', 'reader', 'busybox', 'sh', '-c', 'read l; echo got-$l']);
    const at = await docker(['attach', 'reader'], { input: 'line\n' });
    assert.equal(at.code, 0, at.stderr);
    assert.equal(at.stdout, 'got-line\n');
    await ok(['rm', 'reader']);

    // kill with a signal the container traps, then stop, restart, rename.
    await ok([
      'run',
      '-d',
      '--name',
      'sig',
      'busybox',
      'sh',
      '-c',
      'trap "echo got-hup" HUP; trap "exit 0" TERM; while :; do sleep 0.1; done',
    ]);
    await ok(['kill', '-s', 'HUP', 'sig']);
    await waitFor(async () => (await ok(['logs', 'sig'])).includes('got-hup'));
    await ok(['stop', '-t', '5', 'sig']);
    assert.equal(
      (await inspect<{ State: { Status: string; ExitCode: number } }>('sig')).State.ExitCode,
      0,
    );
    await ok(['start', 'sig']);
    const pid1 = (await inspect<{ State: { Pid: number } }>('sig')).State.Pid;
    await ok(['restart', '-t', '5', 'sig']);
    const after = await inspect<{ State: { Pid: number; Running: boolean } }>('sig');
    assert.ok(after.State.Running);
    assert.notEqual(after.State.Pid, pid1);
    await ok(['rename', 'sig', 'sig2']);
    assert.equal(
      (await ok(['ps', '--filter', 'name=sig2', '--format', '{{.Names}}'])).trim(),
      'sig2',
    );
    await ok(['kill', 'sig2']);
    assert.equal((await ok(['wait', 'sig2'])).trim(), '137');

    // update: limits in place, the restart policy recorded.
    await ok([
      'update',
      '--memory',
      '96m',
      '--memory-swap',
      '192m',
      '--cpus',
      '0.25',
      '--restart',
      'always',
      'ticker',
    ]);
    const u = await inspect<{
      HostConfig: { Memory: number; NanoCpus: number; RestartPolicy: { Name: string } };
    }>('ticker');
    assert.equal(u.HostConfig.Memory, 96 * 1024 * 1024);
    assert.equal(u.HostConfig.NanoCpus, 250_000_000);
    assert.equal(u.HostConfig.RestartPolicy.Name, 'always');

    // top with Docker's default and with ps options.
    const top = await ok(['top', 'ticker']);
    assert.match(top.split('\n')[0] ?? '', /UID\s+PID\s+PPID/);
    assert.match(top, /while :; do echo tick/);
    const topPid = await ok(['top', 'ticker', '-o', 'pid,comm']);
    assert.match(topPid, /^PID\s+COMMAND\n/);
    assert.match(topPid, /\d+\s+sh\n/);

    const rmf = await docker(['rm', 'ticker']);
    assert.notEqual(rmf.code, 0, 'a running container is not removed without -f');
    assert.match(rmf.stderr, /running/);
    await ok(['rm', '-f', 'ticker', 'sig2']);
    assert.equal(await ok(['ps', '-aq']), '', await ok(['ps', '-a']));
  });

  it('logs: -f ends when the container exits; --tail, --since, --until, -t', async () => {
    await ok([
      'run',
      '-d',
      '--name',
      'lg',
      'busybox',
      'sh',
      '-c',
      'for i in 1 2 3 4; do echo l$i; echo e$i >&2; sleep 0.6; done',
    ]);
    const t0 = Date.now();
    const f = await docker(['logs', '-f', 'lg'], { timeoutMs: 20_000 });
    assert.equal(f.code, 0);
    assert.equal(f.stdout, 'l1\nl2\nl3\nl4\n');
    assert.equal(f.stderr, 'e1\ne2\ne3\ne4\n');
    assert.ok(Date.now() - t0 < 10_000, 'logs -f returned once the container exited');
    const tail = await docker(['logs', '--tail', '2', 'lg']);
    assert.equal(tail.stdout, 'l4\n');
    assert.equal(tail.stderr, 'e4\n');
    const stamped = (await ok(['logs', '-t', 'lg'])).trim().split('\n');
    assert.equal(stamped.length, 4);
    const times = stamped.map((l) => {
      const m = /^(\S+) l\d$/.exec(l);
      assert.ok(m, l);
      return Date.parse(m[1] ?? '');
    });
    const t2 = times[1] ?? 0;
    const t3 = times[2] ?? 0;
    assert.equal(await ok(['logs', '--since', unix(t2 - 200), 'lg']), 'l2\nl3\nl4\n');
    assert.equal(await ok(['logs', '--until', unix(t3 - 200), 'lg']), 'l1\nl2\n');
    assert.equal(
      await ok([
        'logs',
        '--since',
        new Date(t2 - 200).toISOString(),
        '--until',
        unix(t3 + 100),
        'lg',
      ]),
      'l2\nl3\n',
    );
    await ok(['rm', 'lg']);
    // A terminal's output is raw, without framing.
    const t = (await ok(['run', '-t', '--name', 'lgt', 'busybox', 'echo', 'tty-out'])).replace(
      /\r/g,
      '',
    );
    assert.equal(t, 'tty-out\n');
    assert.equal((await ok(['logs', 'lgt'])).replace(/\r/g, ''), 'tty-out\n');
    await ok(['rm', 'lgt']);
  });

  it('stats: --no-stream shows a sane CPU % at once; a stream keeps coming', async () => {
    await ok([
      'run',
      '-d',
      '--name',
      'burn',
      '--cpus',
      '0.5',
      'busybox',
      'sh',
      '-c',
      'while :; do :; done',
    ]);
    await ok(['run', '-d', '--name', 'idle', 'busybox', 'sleep', '300']);
    await sleep(3000);
    const cpu = async (name: string) =>
      Number(
        (await ok(['stats', '--no-stream', '--format', '{{.CPUPerc}}', name]))
          .trim()
          .replace('%', ''),
      );
    // The figure is the sampler's (the same one berth stats shows): a busy loop under
    // --cpus 0.5 shows up to half a CPU, whatever else loads the host.
    const native = async () =>
      (
        JSON.parse((await http(d.socket, 'GET', '/v1/containers/burn/stats?stream=0')).body) as {
          cpu_percent: number;
        }
      ).cpu_percent;
    const burn = await cpu('burn');
    const ref = await native();
    assert.ok(burn > 0 && burn < 60, `--cpus 0.5 burner at ${burn}%`);
    assert.ok(Math.abs(burn - ref) < 15, `docker ${burn}% vs berth ${ref}%`);
    const idle = await cpu('idle');
    assert.ok(idle >= 0 && idle < 10, `idle at ${idle}%`);
    const mem = await ok(['stats', '--no-stream', '--format', '{{.MemUsage}}|{{.PIDs}}', 'idle']);
    assert.match(mem, /^[\d.]+[KMG]i?B \/ [\d.]+[KMG]i?B\|1\n$/);
    const raw = await http(d.dockerSocket, 'GET', '/v1.41/containers/burn/stats?stream=0');
    const s = JSON.parse(raw.body) as {
      cpu_stats: {
        cpu_usage: { total_usage: number };
        system_cpu_usage: number;
        online_cpus: number;
      };
      precpu_stats: { cpu_usage: { total_usage: number }; system_cpu_usage: number };
      memory_stats: { usage: number; limit: number };
      pids_stats: { current: number };
    };
    assert.ok(s.cpu_stats.cpu_usage.total_usage > s.precpu_stats.cpu_usage.total_usage);
    assert.ok(s.cpu_stats.system_cpu_usage > s.precpu_stats.system_cpu_usage);
    assert.ok(s.cpu_stats.online_cpus >= 1);
    assert.ok(s.memory_stats.usage > 0 && s.memory_stats.limit > 0);
    // Streaming: cut after a few seconds; several refreshes arrived.
    const st = await docker(['stats', '--format', '{{.Name}} {{.CPUPerc}}', 'burn', 'idle'], {
      timeoutMs: 4000,
    });
    assert.ok((st.stdout.match(/burn \d+\.\d+%/g) ?? []).length >= 2, st.stdout);
    await ok(['rm', '-f', 'burn', 'idle']);
  });

  it('events: Docker shape, --since across a berthd restart, --until, --filter, live', async () => {
    const t0 = Date.now() - 1000;
    await ok(['run', '--name', 'ev1', '-l', 'suite=events', 'busybox', 'true']);
    await d.stopProcess();
    await d.startProcess();
    await ok(['rm', 'ev1']);
    const until = unix(Date.now() + 500);
    const lines = (
      await ok([
        'events',
        '--since',
        unix(t0),
        '--until',
        until,
        '--filter',
        'label=suite=events',
        '--format',
        '{{json .}}',
      ])
    )
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            status: string;
            id: string;
            from: string;
            Type: string;
            Action: string;
            Actor: { ID: string; Attributes: Record<string, string> };
            scope: string;
            time: number;
            timeNano: number;
          },
      );
    assert.deepEqual(
      lines.map((e) => e.Action),
      ['create', 'start', 'die', 'destroy'],
    );
    const die = lines[2];
    assert.equal(die?.status, 'die');
    assert.equal(die?.from, 'busybox');
    assert.equal(die?.Type, 'container');
    assert.equal(die?.scope, 'local');
    assert.equal(die?.Actor.Attributes['name'], 'ev1');
    assert.equal(die?.Actor.Attributes['suite'], 'events');
    assert.equal(die?.Actor.Attributes['image'], 'busybox');
    assert.equal(die?.Actor.Attributes['exitCode'], '0');
    assert.equal(die?.id, die?.Actor.ID);
    assert.equal(Math.floor((die?.timeNano ?? 0) / 1e9), die?.time);
    // The daemon's restart is in the journal between them.
    const daemon = await ok([
      'events',
      '--since',
      unix(t0),
      '--until',
      until,
      '--filter',
      'type=daemon',
      '--format',
      '{{.Action}}',
    ]);
    assert.match(daemon, /stop\nstart\n/);
    const only = await ok([
      'events',
      '--since',
      unix(t0),
      '--until',
      until,
      '--filter',
      'event=die',
      '--filter',
      'container=ev1',
      '--format',
      '{{.Action}}',
    ]);
    assert.equal(only, 'die\n');
    const bad = await docker([
      'events',
      '--since',
      unix(t0),
      '--until',
      until,
      '--filter',
      'bogus=1',
    ]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /bogus/);

    // Live: the stream's headers come at once, events as they happen.
    const p = spawn(
      DOCKER,
      ['events', '--filter', 'container=ev-live', '--format', '{{.Action}}'],
      {
        env: env(),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    try {
      await sleep(500);
      await ok(['run', '--rm', '--name', 'ev-live', 'busybox', 'true']);
      await waitFor(() => out.includes('destroy'), 10_000, 'live events');
      assert.match(out, /create\n(.*\n)*start\n(.*\n)*die\n(.*\n)*destroy\n/);
    } finally {
      p.kill('SIGKILL');
    }
  });

  it('bad requests get Docker’s error shape and status, and leave nothing behind', async () => {
    const before = (await http(d.socket, 'GET', '/v1/volumes')).body;
    const create = (body: unknown, q = '') =>
      http(d.dockerSocket, 'POST', `/v1.41/containers/create${q}`, body);
    const cases: [unknown, string, number, RegExp][] = [
      [{ Image: 'busybox', HostConfig: { Memory: 'lots' } }, '', 400, /HostConfig\.Memory/],
      [
        { Image: 'busybox', Volumes: { '/data': {} }, HostConfig: { Links: ['a:b'] } },
        '',
        400,
        /Links/,
      ],
      [
        { Image: 'busybox', Volumes: { '/data': {} }, HostConfig: { Memory: 4096 } },
        '',
        400,
        /memory/i,
      ],
      [{ Image: 'busybox', HostConfig: { LogConfig: { Type: 'syslog' } } }, '', 400, /syslog/],
      [{ Image: 'busybox', Cmd: ['true'] }, '?name=bad%20name', 400, /name/],
      [{ Image: 'no-such-image' }, '', 404, /^No such image: no-such-image:latest$/],
      [
        { Image: 'busybox', HostConfig: { RestartPolicy: { Name: 'sometimes' } } },
        '',
        400,
        /sometimes/,
      ],
      [
        { Image: 'busybox', HostConfig: { PortBindings: { 'x/tcp': [{}] } } },
        '',
        400,
        /PortBindings/,
      ],
    ];
    for (const [body, q, status, re] of cases) {
      const r = await create(body, q);
      assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.body}`);
      assert.equal(r.headers['content-type'], 'application/json');
      const msg = (JSON.parse(r.body) as { message: string }).message;
      assert.match(msg, re);
    }
    assert.equal(await ok(['ps', '-aq']), '', 'no container was made');
    assert.equal((await http(d.socket, 'GET', '/v1/volumes')).body, before, 'no volume was made');
    // The CLI prints the message, not the JSON.
    const nf = await docker(['rm', 'no-such-container']);
    assert.equal(nf.code, 1);
    assert.equal(nf.stderr.trim(), 'Error: No such container: no-such-container');
    const r404 = await http(d.dockerSocket, 'GET', '/containers/no-such/json');
    assert.equal(r404.status, 404);
    assert.deepEqual(JSON.parse(r404.body), { message: 'No such container: no-such' });
    await ok(['create', '--name', 'taken', 'busybox', 'true']);
    const dup = await create({ Image: 'busybox' }, '?name=taken');
    assert.equal(dup.status, 409);
    await ok(['rm', 'taken']);
    const notRunning = await ok(['create', '--name', 'idle2', 'busybox', 'true']);
    const kill = await http(d.dockerSocket, 'POST', `/containers/${notRunning.trim()}/kill`);
    assert.equal(kill.status, 409);
    await ok(['rm', 'idle2']);
    const badJson = await new Promise<HttpResult>((resolve, reject) => {
      const req = request(
        {
          socketPath: d.dockerSocket,
          method: 'POST',
          path: '/containers/create',
          headers: { 'Content-Type': 'application/json' },
        },
        (res) => {
          let t = '';
          res.on('data', (b: Buffer) => (t += b.toString()));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: t }),
          );
        },
      );
      req.on('error', reject);
      req.end('{"Image":');
    });
    assert.equal(badJson.status, 400);
    assert.ok((JSON.parse(badJson.body) as { message: string }).message);
    const filt = await http(
      d.dockerSocket,
      'GET',
      `/containers/json?filters=${encodeURIComponent('{"bogus":["x"]}')}`,
    );
    assert.equal(filt.status, 400);
    assert.match(filt.body, /bogus/);
    for (const path of [
      '/swarm',
      '/nodes',
      '/services',
      '/plugins',
      '/build',
      '/session',
      '/secrets',
      '/containers/x/export',
      '/containers/x/archive?path=/',
    ]) {
      const r = await http(
        d.dockerSocket,
        path === '/build' || path === '/session' ? 'POST' : 'GET',
        path,
      );
      assert.equal(r.status, 501, path);
      assert.match((JSON.parse(r.body) as { message: string }).message, /not supported by berth/);
    }
    const v = await http(d.dockerSocket, 'GET', '/v1.99/version');
    assert.equal(v.status, 400);
    assert.match(v.body, /too new/);
    assert.equal((await http(d.dockerSocket, 'GET', '/v1.41/no/such/thing')).status, 404);
    assert.equal(await ok(['ps', '-aq']), '');
  });

  it('serves on --docker-socket PATH, and on none with --docker-socket ""', async () => {
    const alt = await mkdtemp('/tmp/bt-dsock-');
    const sock = join(alt, 'alt.sock');
    const a = await TestDaemon.start(['--docker-socket', sock]);
    try {
      assert.ok(!existsSync(a.dockerSocket));
      const r = await runCommand(DOCKER, ['version', '--format', '{{.Server.APIVersion}}'], {
        env: { ...process.env, DOCKER_HOST: `unix://${sock}`, DOCKER_CONFIG: cfg },
      });
      assert.equal(r.stdout.trim(), '1.41', r.stderr);
    } finally {
      await a.destroy();
      await rm(alt, { recursive: true, force: true });
    }
    const none = await TestDaemon.start(['--docker-socket', '']);
    try {
      assert.ok(!existsSync(none.dockerSocket));
      assert.match(none.log, /"dockerSocket":null/);
    } finally {
      await none.destroy();
    }
  });

  it(
    'the docker 28 CLI drives it too',
    {
      skip:
        (!existsSync(DOCKER28) || realpathSync(DOCKER28) === realpathSync(DOCKER)) &&
        'no second CLI',
    },
    async () => {
      const d28 = (args: readonly string[], input?: string) =>
        runCommand(DOCKER28, args, {
          env: env(DOCKER28),
          ...(input !== undefined ? { input } : {}),
        });
      const v = await d28(['version', '--format', '{{.Client.Version}} {{.Server.APIVersion}}']);
      assert.match(v.stdout, /^28\.\S+ 1\.41\n$/, v.stderr);
      const r = await d28(['run', '--rm', 'busybox', 'sh', '-c', 'echo out28; exit 4']);
      assert.equal(r.code, 4, r.stderr);
      assert.equal(r.stdout, 'out28\n');
      assert.equal(
        (await d28(['run', '-d', '--name', 'c28', '-p', '8080', 'busybox', 'sleep', '300'])).code,
        0,
      );
      assert.equal((await d28(['exec', 'c28', 'echo', 'x'])).stdout, 'x\n');
      assert.match((await d28(['ps', '--format', '{{.Names}} {{.State}}'])).stdout, /c28 running/);
      assert.match((await d28(['inspect', '-f', '{{.State.Status}}', 'c28'])).stdout, /running/);
      assert.match((await d28(['port', 'c28'])).stdout, /8080\/tcp -> 0\.0\.0\.0:\d+/);
      assert.equal(
        (await d28(['stats', '--no-stream', '--format', '{{.Name}}', 'c28'])).stdout,
        'c28\n',
      );
      const t = await tty('run -it --rm busybox sh', 'echo t28-$((2*3)); exit 3\n', DOCKER28);
      assert.equal(t.code, 3, t.stdout);
      assert.match(t.stdout, /t28-6/);
      assert.equal((await d28(['info', '--format', '{{.ServerVersion}}'])).code, 0);
      assert.equal((await d28(['rm', '-f', 'c28'])).code, 0);
    },
  );
});
