// Bad input: one clear line, Docker's exit codes, a stable API error code, nothing left.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { TestDaemon } from '../helpers/daemon.ts';

function rawRequest(
  socket: string,
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: socket,
        method,
        path,
        headers: body === undefined ? headers : { 'Content-Type': 'application/json', ...headers },
      },
      (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('errors', () => {
  let d: TestDaemon;
  before(async () => {
    d = await TestDaemon.start();
  });
  after(async () => {
    await d.destroy();
  });

  const expectNothingLeft = async () => {
    assert.equal((await d.berthOk(['ps', '-aq'])).trim(), '');
    assert.deepEqual(d.leaks(), []);
  };

  const cases: { name: string; args: string[]; code: number; stderr: RegExp }[] = [
    {
      name: 'unknown image',
      args: ['run', '--pull', 'never', 'nosuchimage', 'true'],
      code: 125,
      stderr: /No such image: nosuchimage:latest/,
    },
    {
      name: 'bad image name',
      args: ['run', 'Bad/Name!', 'true'],
      code: 125,
      stderr: /Invalid image/,
    },
    {
      name: 'command not in the image',
      args: ['run', '--rm', 'busybox', 'no-such-cmd'],
      code: 127,
      stderr: /no-such-cmd.*not found/,
    },
    {
      name: 'command not executable',
      args: ['run', '--rm', 'busybox', '/etc/passwd'],
      code: 126,
      stderr: /permission denied/,
    },
    {
      name: 'bad name',
      args: ['run', '--name', 'no spaces', 'busybox', 'true'],
      code: 125,
      stderr: /Invalid name/,
    },
    {
      name: 'bad env',
      args: ['run', '-e', '=x', 'busybox', 'true'],
      code: 125,
      stderr: /Invalid env/,
    },
    {
      name: 'bad stop timeout',
      args: ['run', '--stop-timeout', 'soon', 'busybox', 'true'],
      code: 125,
      stderr: /Invalid stop-timeout/,
    },
    {
      name: 'bad network',
      args: ['run', '--network', 'bogus', 'busybox', 'true'],
      code: 125,
      stderr: /No such network: bogus/,
    },
    {
      name: 'unknown user',
      args: ['run', '-u', 'ghost', 'busybox', 'true'],
      code: 125,
      stderr: /no user "ghost"/,
    },
    {
      name: 'relative workdir',
      args: ['run', '-w', 'rel', 'busybox', 'true'],
      code: 125,
      stderr: /Invalid workdir/,
    },
    {
      name: 'bad signal',
      args: ['run', '--stop-signal', 'SIGNOPE', 'busybox', 'true'],
      code: 125,
      stderr: /Invalid stopSignal/,
    },
    {
      name: 'unknown container',
      args: ['stop', 'ghost'],
      code: 125,
      stderr: /No such container: ghost/,
    },
    {
      name: 'wait on unknown container',
      args: ['wait', 'ghost'],
      code: 125,
      stderr: /No such container: ghost/,
    },
    {
      name: 'unknown flag',
      args: ['run', '--no-such-flag', 'busybox'],
      code: 125,
      stderr: /unknown option/,
    },
    {
      name: 'bad filter',
      args: ['ps', '--filter', 'colour=red'],
      code: 125,
      stderr: /Invalid filter/,
    },
    {
      name: 'bad format',
      args: ['ps', '--format', '{{.Names'],
      code: 125,
      stderr: /Invalid format/,
    },
    {
      name: 'missing env file',
      args: ['run', '--env-file', '/nonexistent', 'busybox', 'true'],
      code: 125,
      stderr: /Invalid env-file/,
    },
  ];
  for (const c of cases) {
    it(`${c.name}: exit ${c.code} with one clear line`, async () => {
      const r = await d.berth(c.args);
      assert.equal(r.code, c.code, r.stderr);
      assert.match(r.stderr, c.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
      await expectNothingLeft();
    });
  }

  it("an image that is not here and cannot be pulled: docker's lines, exit 125", async () => {
    // A loopback port nothing listens on: the pull fails without leaving the host.
    const r = await d.berth(['run', '127.0.0.1:1/nosuch', 'true']);
    assert.equal(r.code, 125, r.stderr);
    assert.match(r.stderr, /^Unable to find image '127\.0\.0\.1:1\/nosuch:latest' locally$/m);
    assert.match(r.stderr, /^Error: .*127\.0\.0\.1:1.*$/m);
    await expectNothingLeft();
  });

  it('a duplicate name is refused and the first container is untouched', async () => {
    const id = (await d.berthOk(['create', '--name', 'dup', 'busybox', 'true'])).trim();
    const r = await d.berth(['create', '--name', 'dup', 'busybox', 'true']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /name "dup" is already in use/);
    // Refused before its mount sources are made: no host directory, no volume.
    const hostDir = `/tmp/bt-dup-${process.pid}`;
    const withMounts = await d.berth([
      'create',
      '--name',
      'dup',
      '-v',
      `${hostDir}:/x`,
      '-v',
      'dupvol:/y',
      'busybox',
      'true',
    ]);
    assert.equal(withMounts.code, 125);
    assert.equal(existsSync(hostDir), false);
    assert.doesNotMatch(await d.berthOk(['volume', 'ls', '-q']), /dupvol/);
    assert.equal((await d.berthOk(['ps', '-aq', '--no-trunc'])).trim(), id);
    await d.berthOk(['rm', 'dup']);
    await expectNothingLeft();
  });

  it('a failed start of a created container leaves it created with the error, and nothing else', async () => {
    const id = (await d.berthOk(['create', 'busybox', 'no-such-cmd'])).trim();
    const r = await d.berth(['start', id]);
    assert.equal(r.code, 127);
    const i = JSON.parse(await d.berthOk(['inspect', id]))[0] as {
      State: { Status: string; ExitCode: number; Error: string };
    };
    assert.equal(i.State.Status, 'created');
    assert.equal(i.State.ExitCode, 127);
    assert.match(i.State.Error, /no-such-cmd/);
    assert.deepEqual(
      d.leaks([id]).filter((l) => !l.startsWith('state dir')),
      [],
    );
    await d.berthOk(['rm', id]);
    await expectNothingLeft();
  });

  it('the API answers bad requests with 4xx and {code, message} naming the field', async () => {
    const bad: [string, string, string | undefined, number, string, RegExp][] = [
      ['POST', '/v1/containers', '{not json', 400, 'INVALID_ARGUMENT', /Invalid request/],
      ['POST', '/v1/containers', '{}', 400, 'INVALID_ARGUMENT', /Invalid image/],
      [
        'POST',
        '/v1/containers',
        '{"image":"busybox","cmd":"notalist"}',
        400,
        'INVALID_ARGUMENT',
        /Invalid cmd/,
      ],
      [
        'POST',
        '/v1/containers',
        '{"image":"busybox","bogus":1}',
        400,
        'INVALID_ARGUMENT',
        /Invalid bogus: unknown field/,
      ],
      [
        'POST',
        '/v1/containers',
        '{"image":"busybox","stopTimeout":-5}',
        400,
        'INVALID_ARGUMENT',
        /Invalid stopTimeout/,
      ],
      [
        'GET',
        '/v1/containers/nope',
        undefined,
        404,
        'CONTAINER_NOT_FOUND',
        /No such container: nope/,
      ],
      [
        'POST',
        '/v1/containers/nope/kill?signal=BOGUS',
        undefined,
        400,
        'INVALID_ARGUMENT',
        /Invalid signal/,
      ],
      [
        'GET',
        '/v1/containers?filters=%7Bbad',
        undefined,
        400,
        'INVALID_ARGUMENT',
        /Invalid filters/,
      ],
      ['GET', '/v1/no/such/endpoint', undefined, 404, 'ENDPOINT_NOT_FOUND', /No such endpoint/],
    ];
    for (const [method, path, body, status, code, msg] of bad) {
      const r = await rawRequest(d.socket, method, path, body);
      assert.equal(r.status, status, `${method} ${path}: ${r.body}`);
      const j = JSON.parse(r.body) as { code: string; message: string };
      assert.equal(j.code, code, r.body);
      assert.match(j.message, msg);
    }
    // An oversized body is refused on its declared length, before berthd reads it (sending
    // it all would race the refusal with EPIPE).
    const big = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        {
          socketPath: d.socket,
          method: 'POST',
          path: '/v1/containers',
          headers: {
            'Content-Type': 'application/json',
            'Content-Length': String(2 * 1024 * 1024),
          },
        },
        (res) => {
          let b = '';
          res.on('data', (c: Buffer) => (b += c.toString()));
          res.on('end', () => {
            req.destroy();
            resolve({ status: res.statusCode ?? 0, body: b });
          });
        },
      );
      req.on('error', reject);
      req.write('{"image":"busybox","env":["A=');
    });
    assert.equal(big.status, 413);
    assert.equal((JSON.parse(big.body) as { code: string }).code, 'REQUEST_TOO_LARGE');
    await expectNothingLeft();
    // berthd is still up and serving.
    assert.equal((await rawRequest(d.socket, 'GET', '/_ping')).body, 'OK');
  });
});
