// A health probe run with runc exec inside a real container: exit codes, bounded output,
// and a timed-out probe gone from the container afterwards.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runProbe } from '../../src/engine/health-exec.ts';
import { MAX_OUTPUT_BYTES } from '../../src/engine/health.ts';
import { Runc } from '../../src/runtime/runc.ts';
import { buildProcess } from '../../src/runtime/spec.ts';
import { hardNofile } from '../../src/util/proc.ts';
import { pidAlive, TestDaemon, waitFor } from '../helpers/daemon.ts';

interface Inspect {
  Config: { Env: string[]; Hostname: string };
}

describe('health probe exec', () => {
  let d: TestDaemon | undefined;
  let id = '';
  let env: string[] = [];
  let runc: Runc;
  let tmp = '';

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'bt-health-'));
    d = await TestDaemon.start();
    id = await d.runDetached(['busybox', 'sleep', '1000']);
    const c = (JSON.parse(await d.berthOk(['inspect', id])) as Inspect[])[0];
    assert.ok(c);
    env = [...c.Config.Env, `HOSTNAME=${c.Config.Hostname}`, 'HOME=/root'];
    // berthd's runc root (daemon/main.ts): RUN_ROOT/runc.
    runc = new Runc({ binary: '/usr/sbin/runc', root: join(d.runRoot, 'runc') });
  });

  after(async () => {
    try {
      await d?.destroy();
    } finally {
      if (tmp) await rm(tmp, { recursive: true, force: true });
    }
  });

  // The process the engine would build for a probe: the container's env, workdir and user.
  const probe = (args: string[], timeoutMs = 10_000) =>
    runProbe(
      runc,
      id,
      buildProcess({
        args,
        env,
        cwd: '/',
        uid: 0,
        gid: 0,
        additionalGids: [],
        terminal: false,
        nofileLimit: hardNofile(),
      }),
      timeoutMs,
      { tmpDir: tmp },
    );

  // Processes in the container whose command line is argv, zombies excepted.
  const running = async (argv: readonly string[]): Promise<number[]> => {
    const want = argv.join('\0') + '\0';
    return (await runc.pids(id)).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8') === want && pidAlive(pid);
      } catch {
        return false;
      }
    });
  };

  it('returns exit 0 with stdout and stderr together', async () => {
    const r = await probe(['sh', '-c', 'echo hello; echo oops >&2']);
    assert.equal(r.exitCode, 0);
    assert.match(r.output, /hello\n/);
    assert.match(r.output, /oops\n/);
    assert.deepEqual(readdirSync(tmp), [], 'the process file is removed');
  });

  it('returns the command’s exit code when it fails', async () => {
    const r = await probe(['sh', '-c', 'echo not ready; exit 3']);
    assert.deepEqual(r, { exitCode: 3, output: 'not ready\n' });
  });

  it('fails with runc’s message for a command that does not exist', async () => {
    const r = await probe(['/no/such/check']);
    assert.notEqual(r.exitCode, 0);
    assert.match(r.output, /no such file or directory/i);
  });

  it('keeps the first 4096 bytes of a long output', async () => {
    const r = await probe(['sh', '-c', 'yes abcdefg | head -c 200000; exit 0']);
    assert.equal(r.exitCode, 0);
    assert.equal(r.output, `${'abcdefg\n'.repeat(MAX_OUTPUT_BYTES / 8)}...`);
  });

  it('times out with -1 and kills the probe inside the container', async () => {
    const t0 = Date.now();
    const r = await probe(['sleep', '30'], 300);
    const took = Date.now() - t0;
    assert.deepEqual(r, { exitCode: -1, output: 'Health check exceeded timeout (300ms)' });
    assert.ok(took >= 300 && took < 5000, `took ${took} ms`);
    assert.deepEqual(await running(['sleep', '30']), [], 'the probe is gone from the container');
    assert.deepEqual(readdirSync(tmp), []);
  });

  it('kills the children a timed-out shell probe started', async () => {
    const r = await probe(['sh', '-c', 'echo waiting; sleep 31; echo never'], 300);
    assert.equal(r.exitCode, -1);
    assert.equal(r.output, 'Health check exceeded timeout (300ms): waiting\n');
    await waitFor(async () => (await running(['sleep', '31'])).length === 0, 2000, 'sleep 31 gone');
    assert.deepEqual(await running(['sh', '-c', 'echo waiting; sleep 31; echo never']), []);
  });

  it('gives a background child holding the output a second, then kills it', async () => {
    const t0 = Date.now();
    const r = await probe(['sh', '-c', 'sleep 32 & echo started; exit 4'], 10_000);
    assert.deepEqual(r, { exitCode: 4, output: 'started\n' });
    assert.ok(Date.now() - t0 < 5000, 'the probe did not wait for its timeout');
    await waitFor(async () => (await running(['sleep', '32'])).length === 0, 2000, 'sleep 32 gone');
  });

  it('keeps the output a background child writes within that second', async () => {
    const r = await probe(['sh', '-c', '(sleep 0.3; echo late) & echo early']);
    assert.deepEqual(r, { exitCode: 0, output: 'early\nlate\n' });
  });
});
