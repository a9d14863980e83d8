// Who may use the API: the unix socket is root's and its group's (0660), and a TCP listener
// exists only with mutual TLS (client certificates chaining to berthd's CA), unless
// --insecure-tcp asks for a plain one in so many words.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAIN, TestDaemon, runCommand, type RunResult } from '../helpers/daemon.ts';

const NOBODY = '65534';

async function must(file: string, args: readonly string[]): Promise<string> {
  const r = await runCommand(file, args);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

// A test PKI: berthd's CA with a server and a client certificate, and a second CA with a
// client certificate of its own that berthd must not accept.
interface Pki {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  otherCa: string;
  otherCert: string;
  otherKey: string;
}

async function makePki(dir: string): Promise<Pki> {
  const ossl = (args: string[]) => must('/usr/bin/openssl', args);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = async (name: string) => {
    await ossl([
      'req',
      '-x509',
      ...ec,
      '-keyout',
      join(dir, `${name}.key`),
      '-out',
      join(dir, `${name}.pem`),
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
  };
  const leaf = async (name: string, signer: string, ext: string) => {
    await ossl([
      'req',
      ...ec,
      '-keyout',
      join(dir, `${name}.key`),
      '-out',
      join(dir, `${name}.csr`),
      '-subj',
      `/CN=${name}`,
    ]);
    await writeFile(join(dir, `${name}.ext`), ext);
    await ossl([
      'x509',
      '-req',
      '-in',
      join(dir, `${name}.csr`),
      '-CA',
      join(dir, `${signer}.pem`),
      '-CAkey',
      join(dir, `${signer}.key`),
      '-CAcreateserial',
      '-days',
      '2',
      '-out',
      join(dir, `${name}.pem`),
      '-extfile',
      join(dir, `${name}.ext`),
    ]);
  };
  await ca('ca');
  await ca('other-ca');
  await leaf(
    'server',
    'ca',
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
  );
  await leaf('client', 'ca', 'extendedKeyUsage=clientAuth\n');
  await leaf('intruder', 'other-ca', 'extendedKeyUsage=clientAuth\n');
  const p = (f: string) => join(dir, f);
  return {
    dir,
    ca: p('ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
    otherCa: p('other-ca.pem'),
    otherCert: p('intruder.pem'),
    otherKey: p('intruder.key'),
  };
}

// The `berth` CLI, with exactly the environment given (no BERTH_HOST of the test daemon's).
function berth(
  args: readonly string[],
  o: { env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<RunResult> {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('BERTH_')),
  );
  return runCommand(process.execPath, ['--', MAIN, ...args], {
    env: { ...clean, ...o.env },
    ...(o.input === undefined ? {} : { input: o.input }),
  });
}

// The CLI run as another user, through setpriv (no login, no user needed).
function berthAs(
  uid: string,
  groups: string | 'none',
  args: readonly string[],
  socket: string,
): Promise<RunResult> {
  return runCommand(
    '/usr/bin/setpriv',
    [
      `--reuid=${uid}`,
      `--regid=${uid}`,
      groups === 'none' ? '--clear-groups' : `--groups=${groups}`,
      '--',
      process.execPath,
      '--',
      MAIN,
      ...args,
    ],
    {
      env: {
        PATH: process.env['PATH'] ?? '',
        HOME: '/nonexistent',
        BERTH_HOST: `unix://${socket}`,
      },
    },
  );
}

// One HTTPS request with the given TLS material: its status, or the error that stopped it.
function tlsGet(
  port: number,
  tls: { ca: Buffer; cert?: Buffer; key?: Buffer },
): Promise<{ status?: number; error?: string }> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path: '/v1/containers',
        agent: false,
        ...tls,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
        res.on('error', (e) => resolve({ error: e.message }));
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.end();
  });
}

function plainGet(port: number): Promise<{ status?: number; error?: string }> {
  return new Promise((resolve) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path: '/v1/containers', agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.end();
  });
}

describe('API access: the unix socket', () => {
  const group = `bt${randomBytes(4).toString('hex')}`;
  let gid: number;
  let d: TestDaemon;

  before(async () => {
    await must('/usr/sbin/groupadd', [group]);
    gid = Number((await must('/usr/bin/getent', ['group', group])).split(':')[2]);
    d = await TestDaemon.start(['--group', group]);
    // mkdtemp's directory is 0700; the run root under it is berthd's (0711).
    await chmod(d.dir, 0o711);
  });
  after(async () => {
    await d?.destroy();
    await runCommand('/usr/sbin/groupdel', [group]);
  });

  it('is owned by root and the berth group, mode 0660', () => {
    const st = statSync(d.socket);
    assert.ok(st.isSocket());
    assert.equal(st.uid, 0);
    assert.equal(st.gid, gid);
    assert.equal(st.mode & 0o777, 0o660);
    assert.equal(statSync(d.runRoot).mode & 0o777, 0o711);
    assert.equal(statSync(join(d.runRoot, 'c')).mode & 0o777, 0o700);
  });

  it('refuses a user outside the group', async () => {
    const r = await berthAs(NOBODY, 'none', ['ps'], d.socket);
    assert.equal(r.code, 125, r.stderr);
    assert.match(r.stderr, /Cannot connect to berthd at unix:\/\/.*EACCES/);
  });

  it('lets a member of the group in', async () => {
    const r = await berthAs(NOBODY, String(gid), ['ps', '-a'], d.socket);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /CONTAINER ID/);
  });

  it('is root only when the group does not exist, and says so', async () => {
    const lonely = await TestDaemon.start([
      '--group',
      `bt-nosuch-${randomBytes(3).toString('hex')}`,
    ]);
    try {
      await chmod(lonely.dir, 0o711);
      assert.equal(statSync(lonely.socket).mode & 0o777, 0o600);
      assert.match(lonely.log, /does not exist: the API socket is root's only/);
      const r = await berthAs(NOBODY, String(gid), ['ps'], lonely.socket);
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, /EACCES/);
      assert.equal((await lonely.berthOk(['ps', '-q'])).trim(), '');
    } finally {
      await lonely.destroy();
    }
  });
});

describe('API access: TCP', () => {
  let pki: Pki;
  let d: TestDaemon;
  let port: number;
  let tcp: string;

  before(async () => {
    pki = await makePki(await mkdtemp('/tmp/bt-pki-'));
    port = await freePort();
    tcp = `tcp://127.0.0.1:${port}`;
    d = await TestDaemon.start([
      '-H',
      tcp,
      '--tls-cert',
      pki.serverCert,
      '--tls-key',
      pki.serverKey,
      '--tls-ca',
      pki.ca,
      '--api-read-timeout',
      '3s',
    ]);
  });
  after(async () => {
    await d?.destroy();
    if (pki) await rm(pki.dir, { recursive: true, force: true });
  });

  const tlsArgs = () => [
    '-H',
    tcp,
    '--tlsverify',
    '--tlscacert',
    pki.ca,
    '--tlscert',
    pki.clientCert,
    '--tlskey',
    pki.clientKey,
  ];

  it('serves the API with a client certificate from its CA', async () => {
    const r = await berth([...tlsArgs(), 'ps', '-a']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /CONTAINER ID/);
    assert.match(d.log, /API served over mutual TLS/);
    const ev = (await d.journal()).find((e) => e.action === 'start' && e.attributes['tcp']);
    assert.equal(ev?.attributes['tcp'], tcp);
    assert.equal(ev?.attributes['tls'], 'mutual');
  });

  it("takes Docker's environment: BERTH_HOST, BERTH_TLS_VERIFY, BERTH_CERT_PATH", async () => {
    const certs = join(pki.dir, 'certs');
    await mkdir(certs);
    await copyFile(pki.ca, join(certs, 'ca.pem'));
    await copyFile(pki.clientCert, join(certs, 'cert.pem'));
    await copyFile(pki.clientKey, join(certs, 'key.pem'));
    const r = await berth(['version'], {
      env: { BERTH_HOST: tcp, BERTH_TLS_VERIFY: '1', BERTH_CERT_PATH: certs },
    });
    assert.equal(r.code, 0, r.stderr);
    // Without BERTH_TLS_VERIFY the client speaks plain HTTP, which the TLS port refuses.
    const plain = await berth(['version'], { env: { BERTH_HOST: tcp, BERTH_CERT_PATH: certs } });
    assert.equal(plain.code, 125);
    assert.match(plain.stderr, /Cannot connect to berthd at tcp:\/\/127\.0\.0\.1/);
  });

  it('runs attach and exec over TLS (the hijacked routes)', async () => {
    const run = await berth([...tlsArgs(), 'run', '--rm', 'busybox', 'echo', 'over-tls']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'over-tls\n');
    const id = (await berth([...tlsArgs(), 'run', '-d', 'busybox', 'sleep', '60'])).stdout.trim();
    assert.match(id, /^[0-9a-f]{64}$/);
    try {
      const ex = await berth([...tlsArgs(), 'exec', id, 'sh', '-c', 'echo exec-$((6*7))']);
      assert.equal(ex.code, 0, ex.stderr);
      assert.equal(ex.stdout, 'exec-42\n');
      // stdin over the stream, then its end (a half-close), then the output back.
      const cat = await berth([...tlsArgs(), 'exec', '-i', id, 'cat'], { input: 'piped-in\n' });
      assert.equal(cat.code, 0, cat.stderr);
      assert.equal(cat.stdout, 'piped-in\n');
    } finally {
      const rm = await berth([...tlsArgs(), 'rm', '-f', id]);
      assert.equal(rm.code, 0, rm.stderr);
    }
  });

  it('refuses a client without a certificate', async () => {
    const r = await tlsGet(port, { ca: await readFile(pki.ca) });
    assert.equal(r.status, undefined, 'no HTTP answer without a client certificate');
    assert.ok(r.error);
  });

  it('refuses a client certificate from another CA', async () => {
    const r = await tlsGet(port, {
      ca: await readFile(pki.ca),
      cert: await readFile(pki.otherCert),
      key: await readFile(pki.otherKey),
    });
    assert.equal(r.status, undefined, 'no HTTP answer for a foreign certificate');
    assert.ok(r.error);
    const cli = await berth([
      '-H',
      tcp,
      '--tlsverify',
      '--tlscacert',
      pki.ca,
      '--tlscert',
      pki.otherCert,
      '--tlskey',
      pki.otherKey,
      'ps',
    ]);
    assert.equal(cli.code, 125);
    assert.match(cli.stderr, /Cannot connect to berthd at tcp:/);
    assert.match(d.log, /API client refused at the TLS handshake/);
  });

  it('refuses plain HTTP on the TLS port', async () => {
    const r = await plainGet(port);
    assert.equal(r.status, undefined, `plain HTTP got an answer: ${JSON.stringify(r)}`);
  });

  it('is verified by the client: a daemon certificate from another CA is refused', async () => {
    const r = await berth([
      '-H',
      tcp,
      '--tlsverify',
      '--tlscacert',
      pki.otherCa,
      '--tlscert',
      pki.clientCert,
      '--tlskey',
      pki.clientKey,
      'ps',
    ]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /Cannot connect to berthd at tcp:.*certificate/i);
  });

  it('still serves the socket, and is up after all of that', async () => {
    assert.equal((await d.berthOk(['ps', '-aq'])).trim(), '');
    const r = await tlsGet(port, {
      ca: await readFile(pki.ca),
      cert: await readFile(pki.clientCert),
      key: await readFile(pki.clientKey),
    });
    assert.equal(r.status, 200);
  });
});

describe('API access: refusing to start', () => {
  // berthd with these arguments must exit before it makes anything.
  async function refuses(args: readonly string[], why: RegExp): Promise<void> {
    const dir = await mkdtemp('/tmp/btr-');
    try {
      const r = await runCommand(
        process.execPath,
        [MAIN, 'daemon', '--root', join(dir, 'data'), '--run-root', join(dir, 'run'), ...args],
        { timeoutMs: 30_000 },
      );
      assert.equal(r.code, 125, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, why);
      assert.ok(!existsSync(join(dir, 'data')), 'nothing made under the data root');
      assert.ok(!existsSync(join(dir, 'run')), 'nothing made under the run root');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('refuses a TCP listener without TLS', async () => {
    await refuses(
      ['-H', 'tcp://127.0.0.1:2376'],
      /refusing to serve the API on tcp:\/\/127\.0\.0\.1:2376 without mutual TLS/,
    );
  });

  it('refuses half of the TLS flags', async () => {
    const dir = await mkdtemp('/tmp/bt-pki-');
    try {
      const pki = await makePki(dir);
      await refuses(
        ['-H', 'tcp://127.0.0.1:2376', '--tls-cert', pki.serverCert, '--tls-key', pki.serverKey],
        /--tls-ca missing/,
      );
      await refuses(
        [
          '-H',
          'tcp://127.0.0.1:2376',
          '--tls-cert',
          pki.serverCert,
          '--tls-key',
          pki.clientKey,
          '--tls-ca',
          pki.ca,
        ],
        /Invalid tls-cert: cannot use/,
      );
      await refuses(
        ['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-ca', pki.ca],
        /no -H tcp:\/\/HOST:PORT/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses malformed addresses', async () => {
    await refuses(
      ['-H', 'tcp://127.0.0.1'],
      /Invalid host: "tcp:\/\/127\.0\.0\.1" is not tcp:\/\/HOST:PORT/,
    );
    await refuses(['-H', 'http://127.0.0.1:80'], /Invalid host/);
  });

  it('serves plain TCP only with --insecure-tcp, and says so loudly', async () => {
    const port = await freePort();
    const d = await TestDaemon.start(['-H', `tcp://127.0.0.1:${port}`, '--insecure-tcp']);
    try {
      assert.match(d.log, /INSECURE: the API is served on tcp:\/\/127\.0\.0\.1:\d+ WITHOUT TLS/);
      assert.equal((await plainGet(port)).status, 200);
      const r = await berth(['-H', `tcp://127.0.0.1:${port}`, 'ps', '-a']);
      assert.equal(r.code, 0, r.stderr);
      const ev = (await d.journal()).find((e) => e.action === 'start' && e.attributes['tcp']);
      assert.equal(ev?.attributes['tls'], 'none');
    } finally {
      await d.destroy();
    }
  });
});
