// Production logging: the monitor writes, rotates and bounds each container's log; berthd
// only reads. Numbered lines make gaps, duplicates and reordering visible.
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn } from 'node:child_process';
import { MAIN, pidAlive, runCommand, TestDaemon, waitFor } from '../helpers/daemon.ts';

function assertRun(lines: string[], first: number, last: number, what: string): void {
  const nums = lines.map(Number);
  assert.equal(
    nums.length,
    last - first + 1,
    `${what}: expected ${first}..${last}, got ${nums.length} lines (${nums[0]}..${nums[nums.length - 1]})`,
  );
  nums.forEach((n, i) => {
    if (n !== first + i) assert.fail(`${what}: line ${i} is ${n}, expected ${first + i}`);
  });
}

const logFiles = (d: TestDaemon, id: string) =>
  readdirSync(join(d.root, 'logs', id)).filter((f) => f.startsWith('container.log'));

describe('logs', () => {
  let d: TestDaemon;
  before(async () => {
    d = await TestDaemon.start();
  });
  after(async () => {
    await d.destroy();
  });

  it('berth logs shows stdout and stderr apart, with --tail, --since, --until, -t and --stream', async () => {
    const id = await d.runDetached([
      'busybox',
      'sh',
      '-c',
      'echo out1; echo err1 >&2; sleep 1.2; echo out2; echo err2 >&2',
    ]);
    await d.berthOk(['wait', id]);
    const all = await d.berth(['logs', id]);
    assert.equal(all.stdout, 'out1\nout2\n');
    assert.equal(all.stderr, 'err1\nerr2\n');
    // --tail counts lines of both streams together, as docker's does.
    const t = await d.berth(['logs', '--tail', '2', id]);
    assert.equal(t.stdout, 'out2\n');
    assert.equal(t.stderr, 'err2\n');
    assert.equal((await d.berth(['logs', '--stream', 'stderr', id])).stdout, '');
    const ts = await d.berthOk(['logs', '-t', '--stream', 'stdout', id]);
    const [l1, l2] = ts.trim().split('\n');
    const t1 = l1?.split(' ')[0] ?? '';
    const t2 = l2?.split(' ')[0] ?? '';
    assert.match(t1, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    assert.ok(Date.parse(t2) - Date.parse(t1) >= 1000);
    // --since between the two: only the second pair; --until: only the first.
    const mid = new Date(Date.parse(t1) + 600).toISOString();
    assert.equal((await d.berth(['logs', '--since', mid, id])).stdout, 'out2\n');
    assert.equal((await d.berth(['logs', '--until', mid, id])).stdout, 'out1\n');
    const bad = await d.berth(['logs', '--since', 'yesterday-ish', id]);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /Invalid since/);
    await d.berthOk(['rm', id]);
  });

  it('rotates in the monitor at max-size, keeps max-file files, and loses no line it keeps', async () => {
    const n = 20000;
    const id = await d.runDetached([
      '--log-opt',
      'max-size=16k',
      '--log-opt',
      'max-file=3',
      'busybox',
      'seq',
      '1',
      String(n),
    ]);
    await d.berthOk(['wait', id]);
    const files = logFiles(d, id);
    assert.equal(files.length, 3, files.join(' '));
    for (const f of files)
      assert.ok(statSync(join(d.root, 'logs', id, f)).size <= 16 * 1024, `${f} within max-size`);
    const out = (await d.berthOk(['logs', id])).trim().split('\n');
    // The lines kept are one unbroken run ending at the last line written.
    assertRun(out, n - out.length + 1, n, 'kept lines');
    assert.ok(out.length > 500, `kept ${out.length} lines`);
    const inspect = JSON.parse(await d.berthOk(['inspect', id]))[0] as {
      HostConfig: { LogConfig: { Config: Record<string, string> } };
    };
    assert.equal(inspect.HostConfig.LogConfig.Config['max-file'], '3');
    const ev = await d.berthOk(['events', '--format', '{{.action}} {{.actorId}}']);
    assert.ok(
      ev.split('\n').some((l) => l === `log-rotated ${id}`),
      'rotation recorded as an event',
    );
    await d.berthOk(['rm', id]);
  });

  it('logs -f follows across rotations with no gap and no duplicate, and ends when the container stops', async () => {
    const n = 30000;
    const id = (
      await d.berthOk([
        'create',
        '--log-opt',
        'max-size=32k',
        '--log-opt',
        'max-file=1000',
        'busybox',
        'sh',
        '-c',
        `sleep 0.5; seq 1 ${n}; sleep 0.3`,
      ])
    ).trim();
    await d.berthOk(['start', id]);
    const r = await d.berth(['logs', '-f', id], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assertRun(r.stdout.trim().split('\n'), 1, n, 'followed lines');
    assert.ok(logFiles(d, id).length > 5, 'it did rotate several times');
    await d.berthOk(['rm', id]);
  });

  it('compresses rotated files off the write path and still reads them', async () => {
    const n = 20000;
    const id = await d.runDetached([
      '--log-opt',
      'max-size=16k',
      '--log-opt',
      'max-file=50',
      '--log-opt',
      'compress=true',
      'busybox',
      'seq',
      '1',
      String(n),
    ]);
    await d.berthOk(['wait', id]);
    await waitFor(
      () => logFiles(d, id).filter((f) => f.endsWith('.gz')).length >= 3,
      10_000,
      'compressed files',
    );
    const out = (await d.berthOk(['logs', id])).trim().split('\n');
    assertRun(out, n - out.length + 1, n, 'lines through gz files');
    const tail = (await d.berthOk(['logs', '--tail', '5', id])).trim().split('\n');
    assertRun(tail, n - 4, n, 'tail');
    await d.berthOk(['rm', id]);
  });

  it('keeps every line across a kill -9 of berthd during a flood', async () => {
    const n = 300000;
    const id = await d.runDetached([
      '--log-opt',
      'max-size=1m',
      '--log-opt',
      'max-file=100',
      'busybox',
      'seq',
      '1',
      String(n),
    ]);
    await sleep(100);
    await d.kill9();
    await sleep(500);
    await d.startProcess();
    await d.berthOk(['wait', id]);
    const out = (await d.berthOk(['logs', id])).trim().split('\n');
    assertRun(out, 1, n, 'all lines');
    await d.berthOk(['rm', id]);
  });

  it('with a small retention across a kill -9 of berthd, keeps one unbroken run ending at the last line', async () => {
    const n = 200000;
    const id = await d.runDetached([
      '--log-opt',
      'max-size=64k',
      '--log-opt',
      'max-file=4',
      'busybox',
      'seq',
      '1',
      String(n),
    ]);
    await sleep(50);
    await d.kill9();
    await sleep(300);
    await d.startProcess();
    await d.berthOk(['wait', id]);
    const out = (await d.berthOk(['logs', id])).trim().split('\n');
    assertRun(out, n - out.length + 1, n, 'kept lines');
    assert.ok(logFiles(d, id).length <= 4);
    await d.berthOk(['rm', id]);
  });

  it('notices a killed monitor at once, says so, and leaves nothing behind', async () => {
    const id = await d.runDetached(['busybox', 'sleep', '300']);
    const i = JSON.parse(await d.berthOk(['inspect', id]))[0] as {
      State: { Pid: number };
      MonitorPid: number;
    };
    process.kill(i.MonitorPid, 'SIGKILL');
    const t0 = Date.now();
    await waitFor(
      async () =>
        (JSON.parse(await d.berthOk(['inspect', id]))[0] as { State: { Status: string } }).State
          .Status === 'exited',
      5000,
      'exited',
    );

    const s = JSON.parse(await d.berthOk(['inspect', id]))[0] as {
      State: { Error: string; Running: boolean };
    };
    assert.equal(s.State.Running, false);
    assert.match(s.State.Error, /monitor lost/);
    assert.ok(!pidAlive(i.State.Pid), 'the orphaned container is stopped');
    assert.deepEqual(d.leaks([id]), []);
    const ev = await d.berthOk(['events', '--format', '{{.action}} {{.actorId}} {{.time}}']);
    const lost = ev.split('\n').find((l) => l.startsWith(`monitor-lost ${id} `));
    assert.ok(lost, ev);
    // berthd's own record of when it noticed (not the CLI's polling, which a loaded host
    // slows): the monitor's socket closing is an event, not a poll.
    const noticedMs = Date.parse(lost.split(' ')[2] ?? '') - t0;
    assert.ok(noticedMs < 1000, `noticed after ${noticedMs} ms`);
    await d.berthOk(['rm', id]);
  });

  it('journal merges containers in time order, filters, and resumes exactly from a cursor', async () => {
    const a = await d.runDetached([
      '--name',
      'ja',
      '-l',
      'team=x',
      'busybox',
      'sh',
      '-c',
      'for i in 1 2 3 4 5; do echo a$i; sleep 0.05; done',
    ]);
    const b = await d.runDetached([
      '--name',
      'jb',
      'busybox',
      'sh',
      '-c',
      'for i in 1 2 3 4 5; do echo b$i >&2; sleep 0.05; done',
    ]);
    await d.berthOk(['wait', a, b]);
    const rows = (
      await d.berthOk(['journal', '--container', 'ja', '--container', 'jb', '--format', 'json'])
    )
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            cursor: string;
            time: string;
            name: string;
            stream: string;
            message: string;
          },
      );
    assert.equal(rows.length, 10);
    const times = rows.map((r) => r.time);
    assert.deepEqual(times, [...times].sort(), 'time-ordered');
    assert.deepEqual(
      rows.filter((r) => r.name === 'jb').map((r) => r.stream),
      Array(5).fill('stderr'),
    );
    assert.equal((await d.berthOk(['journal', '--label', 'team=x'])).trim().split('\n').length, 5);
    assert.equal(
      (
        await d.berthOk([
          'journal',
          '--container',
          'ja',
          '--container',
          'jb',
          '--grep',
          '^b[24]$',
          '--format',
          '{{.message}}',
        ])
      ).trim(),
      'b2\nb4',
    );
    const cursor = rows[3]?.cursor ?? '';
    const rest = (
      await d.berthOk([
        'journal',
        '--container',
        'ja',
        '--container',
        'jb',
        '--after-cursor',
        cursor,
        '--format',
        '{{.message}}',
      ])
    )
      .trim()
      .split('\n');
    assert.deepEqual(
      rest,
      rows.slice(4).map((r) => r.message),
    );
    // A removed container's logs stay in the journal.
    await d.berthOk(['rm', a, b]);
    assert.equal((await d.berthOk(['journal', '--container', 'ja'])).trim().split('\n').length, 5);
    const bad = await d.berth(['journal', '--after-cursor', 'garbage']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /Invalid after/);
  });

  it('journal -f streams new lines of new containers as they come', async () => {
    const child = spawn(
      process.execPath,
      ['--', MAIN, 'journal', '-f', '--container', 'jf', '--format', '{{.message}}'],
      {
        env: { ...process.env, BERTH_HOST: `unix://${d.socket}` },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    try {
      await sleep(300);
      const id = await d.runDetached([
        '--name',
        'jf',
        'busybox',
        'sh',
        '-c',
        'for i in 1 2 3; do echo f$i; sleep 0.2; done',
      ]);
      await waitFor(
        () => out.split('\n').filter(Boolean).length >= 3,
        10_000,
        'three followed lines',
      );
      assert.equal(out, 'f1\nf2\nf3\n');
      await d.berthOk(['rm', '-f', id]);
    } finally {
      child.kill('SIGTERM');
    }
  });

  it('rejects bad log options with the field named', async () => {
    for (const [opt, msg] of [
      ['max-size=huge', /Invalid log-opt max-size/],
      ['max-file=0', /Invalid log-opt max-file/],
      ['compress=maybe', /Invalid log-opt compress/],
      ['colour=blue', /Invalid log-opt: unknown option "colour"/],
    ] as const) {
      const r = await d.berth(['run', '--log-opt', opt, 'busybox', 'true']);
      assert.equal(r.code, 125);
      assert.match(r.stderr, msg);
    }
    assert.equal(
      (
        await d.berthOk(['ps', '-aq', '--filter', 'ancestor=busybox', '--filter', 'status=created'])
      ).trim(),
      '',
    );
  });
});

describe('logs on a disk that fills, and the host-wide cap', () => {
  let d: TestDaemon;
  let tmpfs = '';
  before(async () => {
    d = await TestDaemon.start(['--log-host-cap', '96k']);
  });
  after(async () => {
    if (tmpfs) await runCommand('umount', ['-l', tmpfs]);
    await d.destroy();
  });

  it('drops output instead of blocking when the log disk is full, marks and counts the drop', async () => {
    const script =
      'seq 1 400000; touch /tmp/flooded; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after-the-flood';
    const id = (
      await d.berthOk(['create', '--log-opt', 'max-size=10m', 'busybox', 'sh', '-c', script])
    ).trim();
    // The container's log directory on a 256 KiB tmpfs, mostly taken by a filler file.
    tmpfs = join(d.root, 'logs', id);
    await mkdir(tmpfs, { recursive: true });
    const m = await runCommand('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', tmpfs]);
    assert.equal(m.code, 0, m.stderr);
    await writeFile(join(tmpfs, 'filler'), Buffer.alloc(160 * 1024));
    const t0 = Date.now();
    await d.berthOk(['start', id]);
    await waitFor(
      async () => (await d.berth(['exec', id, 'test', '-e', '/tmp/flooded'])).code === 0,
      20_000,
      'flood written',
    );
    // Not a timing assertion: a monitor that blocked on the full disk would hold the
    // container for far longer than this.
    assert.ok(Date.now() - t0 < 15_000, 'the container was not held up by the full disk');
    // The monitor may still be working through queued output: wait until its drop
    // counter settles before making room.
    let last = -1;
    await waitFor(
      async () => {
        const st = (
          JSON.parse(await d.berthOk(['inspect', id]))[0] as {
            LogStats: { logDroppedBytes: number };
          }
        ).LogStats;
        const settled = st.logDroppedBytes > 0 && st.logDroppedBytes === last;
        last = st.logDroppedBytes;
        if (!settled) await sleep(200);
        return settled;
      },
      20_000,
      'drops settle',
    );
    await rm(join(tmpfs, 'filler'));
    await d.berthOk(['exec', id, 'touch', '/tmp/go']);
    assert.equal((await d.berthOk(['wait', id])).trim(), '0');
    const logs = await d.berth(['logs', id]);
    assert.match(logs.stdout, /after-the-flood\n$/);
    assert.match(logs.stderr, /\[berth-monitor\] dropped \d+ bytes of output/);
    const i = JSON.parse(await d.berthOk(['inspect', id]))[0] as {
      LogConfig: { DroppedBytes: number };
    };
    assert.ok(
      i.LogConfig.DroppedBytes > 100_000,
      `dropped bytes counted: ${i.LogConfig.DroppedBytes}`,
    );
    const ev = await d.berthOk(['events', '--format', '{{.action}} {{.actorId}}']);
    assert.ok(ev.includes(`log-dropped ${id}`));
    await d.berthOk(['rm', id]);
    await runCommand('umount', [tmpfs]);
    tmpfs = '';
  });

  it('holds the host-wide cap across containers by pruning the oldest rotated files', async () => {
    const ids: string[] = [];
    for (let k = 0; k < 3; k++) {
      ids.push(
        await d.runDetached([
          '--log-opt',
          'max-size=16k',
          '--log-opt',
          'max-file=20',
          'busybox',
          'seq',
          '1',
          '30000',
        ]),
      );
    }
    await d.berthOk(['wait', ...ids]);
    await waitFor(
      () => {
        let total = 0;
        for (const id of ids)
          for (const f of logFiles(d, id))
            if (f !== 'container.log') total += statSync(join(d.root, 'logs', id, f)).size;
        return total <= 96 * 1024;
      },
      10_000,
      'rotated total within the cap',
    );
    const ev = await d.berthOk(['events', '--format', '{{.action}}']);
    assert.ok(ev.includes('log-pruned'));
    await d.berthOk(['rm', ...ids]);
  });
});
