// The real docker CLI (Debian's /usr/bin/docker, else the one on the PATH) against berthd's Docker socket: pull with
// progress, images, inspect, history, tag, rmi, save, load, import, push, login (htpasswd
// and token registries, credentials sent per pull in X-Registry-Auth and never kept by
// berthd), prune; volumes and networks. Bad requests get Docker's error shape and status,
// and leave nothing behind.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'node:http';
import { TestDaemon, runCommand } from '../helpers/daemon.ts';
import {
  DOCKER,
  dockerCli,
  dockerRequest,
  dockerSocketOf,
  removeDockerLeftovers,
  seedRegistry,
} from '../helpers/docker-fixtures.ts';
import { TestRegistry, type BuiltImage, type OciLayoutBuilder } from '../helpers/registry.ts';
import { tarball } from '../fixtures/layers/tar-writer.ts';

interface ImageInspect {
  Id: string;
  RepoTags: string[];
  RepoDigests: string[];
  Created: string;
  Size: number;
  Architecture: string;
  Os: string;
  Config: { Env: string[] | null; Cmd: string[] | null; Labels: Record<string, string> | null };
  ContainerConfig: { Env: string[] | null; Volumes: unknown };
  RootFS: { Type: string; Layers: string[] };
}

const ALICE = { username: 'alice', password: 'correct horse' };

// What berth keeps of images, to see that a refused request kept nothing.
function imageStore(d: TestDaemon): string[] {
  const ls = (p: string) => {
    const full = join(d.root, 'images', p);
    return existsSync(full) ? readdirSync(full).map((e) => `${p}/${e}`) : [];
  };
  return [...ls('blobs/sha256'), ...ls('layers')].sort();
}

// The docker CLI shows a daemon error as its message; a raw JSON body there means the
// response was not Docker's error shape (or not sent as exactly application/json).
function cliError(r: { code: number; stderr: string }, msg: RegExp): void {
  assert.notEqual(r.code, 0);
  assert.doesNotMatch(r.stderr, /\{"message"/, 'the CLI shows the message, not a JSON body');
  assert.match(r.stderr, msg);
}

describe('docker CLI: images', () => {
  let d: TestDaemon;
  let reg: TestRegistry;
  let layout: OciLayoutBuilder;
  let built: Map<string, BuiltImage>;
  let cfg: string;
  let work: string;
  let sock: string;
  const docker = (args: readonly string[], input?: string) =>
    dockerCli(d, cfg, args, input === undefined ? {} : { input });
  const ok = async (args: readonly string[], input?: string) => {
    const r = await docker(args, input);
    assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  const ref = (s: string) => `${reg.host}/${s}`;
  // For a docker CLI run in a pipeline.
  const shellEnv = () => ({
    PATH: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin',
    DOCKER_HOST: `unix://${sock}`,
    DOCKER_CONFIG: cfg,
    HOME: cfg,
  });
  const inspect = async (name: string) =>
    (JSON.parse(await ok(['image', 'inspect', name])) as ImageInspect[])[0] as ImageInspect;

  before(async () => {
    work = await mkdtemp('/tmp/bt-dimg-');
    cfg = join(work, 'docker-config');
    reg = await TestRegistry.start();
    ({ layout, built } = await seedRegistry(reg, [
      { repo: 'test/app', tag: 'v1' },
      { repo: 'test/app', tag: 'v2' },
      { repo: 'test/other', tag: 'v1' },
    ]));
    d = await TestDaemon.start();
    sock = dockerSocketOf(d);
  });
  after(async () => {
    await removeDockerLeftovers(d);
    await d.destroy();
    await reg.stop();
    await layout.remove();
    await rm(work, { recursive: true, force: true });
  });

  it('pulls with progress, lists and inspects the image as Docker does', async () => {
    const app = built.get('test/app:v1');
    assert.ok(app);
    const out = await ok(['pull', ref('test/app:v1')]);
    assert.match(out, /v1: Pulling from test\/app/);
    for (const l of app.layers)
      assert.match(out, new RegExp(`${l.digest.slice(7, 19)}: Pull complete`));
    assert.match(out, new RegExp(`Digest: ${app.manifestDigest}`));
    assert.match(out, /Status: Downloaded newer image for 127\.0\.0\.1:\d+\/test\/app:v1/);
    const again = await ok(['pull', ref('test/app:v1')]);
    assert.match(again, /Status: Image is up to date/);

    const listed = await ok([
      'images',
      '--digests',
      '--format',
      '{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}}',
    ]);
    assert.ok(
      listed.includes(
        `${ref('test/app')} v1 ${app.manifestDigest} ${app.configDigest.slice(7, 19)}`,
      ),
      listed,
    );
    const img = await inspect(ref('test/app:v1'));
    assert.equal(img.Id, app.configDigest);
    assert.deepEqual(img.RepoTags, [ref('test/app:v1')]);
    assert.deepEqual(img.RepoDigests, [`${ref('test/app')}@${app.manifestDigest}`]);
    assert.deepEqual(img.RootFS, { Type: 'layers', Layers: app.layers.map((l) => l.diffId) });
    assert.equal(img.Architecture, 'amd64');
    assert.equal(img.Os, 'linux');
    assert.deepEqual(img.Config.Cmd, ['cat', '/etc/marker']);
    assert.deepEqual(img.Config.Labels, { 'org.example.suite': 'docker' });
    assert.deepEqual(img.ContainerConfig.Env, ['PATH=/bin'], 'ContainerConfig is there');
    assert.equal(img.ContainerConfig.Volumes, null);
    assert.ok(img.Size > 0);
    assert.equal(img.Created, '2024-01-01T00:00:00.000Z');

    const history = await ok([
      'history',
      '--no-trunc',
      '--format',
      '{{.ID}}|{{.CreatedBy}}',
      ref('test/app:v1'),
    ]);
    assert.deepEqual(history.trim().split('\n'), [
      `${app.configDigest}|layer 1`,
      '<missing>|layer 0',
    ]);
  });

  it('pulls by digest; the untagged image is dangling and prune removes it', async () => {
    const v2 = built.get('test/app:v2');
    assert.ok(v2);
    await ok(['pull', ref(`test/app@${v2.manifestDigest}`)]);
    const dangling = await ok([
      'images',
      '--filter',
      'dangling=true',
      '--format',
      '{{.ID}} {{.Repository}}:{{.Tag}}',
    ]);
    assert.equal(dangling.trim(), `${v2.configDigest.slice(7, 19)} ${ref('test/app')}:<none>`);
    const inspected = await inspect(ref(`test/app@${v2.manifestDigest}`));
    assert.deepEqual(inspected.RepoTags, []);
    const pruned = await ok(['image', 'prune', '-f']);
    assert.match(pruned, new RegExp(`deleted: ${v2.configDigest}`));
    assert.equal((await ok(['images', '-q', '--filter', 'dangling=true'])).trim(), '');
    // The tagged image stays.
    await inspect(ref('test/app:v1'));
  });

  it('tags, filters by reference, label, before and since, and removes by name', async () => {
    await ok(['tag', ref('test/app:v1'), 'mine/app:latest']);
    await ok(['tag', ref('test/app:v1'), 'mine/app:second']);
    const mine = await ok(['images', 'mine/app', '--format', '{{.Repository}}:{{.Tag}}']);
    assert.deepEqual(mine.trim().split('\n').sort(), ['mine/app:latest', 'mine/app:second']);
    const byRef = await ok([
      'images',
      '--filter',
      'reference=mine/*:sec*',
      '--format',
      '{{.Repository}}:{{.Tag}}',
    ]);
    assert.equal(byRef.trim(), 'mine/app:second');
    const byLabel = await ok(['images', '-q', '--filter', 'label=org.example.suite=docker']);
    assert.ok(
      byLabel.includes(built.get('test/app:v1')?.configDigest.slice(7, 19) ?? '?'),
      byLabel,
    );
    assert.equal(
      (await ok(['images', '-q', '--filter', 'label=org.example.suite=nope'])).trim(),
      '',
    );
    // An import is dated now; the pulled image and the seeded busybox say 2024.
    const rootfs = join(work, 'tiny.tar');
    writeFileSync(rootfs, tarball([{ name: 'hello', body: 'new\n' }]));
    await ok(['import', rootfs, 'filters/new']);
    const olderThanNew = await ok([
      'images',
      '--filter',
      'before=filters/new',
      '--format',
      '{{.Repository}}',
    ]);
    assert.ok(olderThanNew.includes(ref('test/app')), olderThanNew);
    assert.match(olderThanNew, /busybox/);
    assert.doesNotMatch(olderThanNew, /filters\/new/);
    const since = await ok([
      'images',
      '--filter',
      `since=${ref('test/app:v1')}`,
      '--format',
      '{{.Repository}}',
    ]);
    assert.equal(since.trim(), 'filters/new');
    await ok(['rmi', 'filters/new']);

    // An id with several names is a conflict without force.
    const id = built.get('test/app:v1')?.configDigest ?? '';
    const conflict = await dockerRequest(sock, 'DELETE', `/v1.41/images/${id.slice(7, 19)}`);
    assert.equal(conflict.status, 409, conflict.body);
    assert.match(
      (conflict.json as { message: string }).message,
      /referenced in multiple repositories/,
    );

    const untag = await ok(['rmi', 'mine/app:second']);
    assert.equal(untag.trim(), 'Untagged: mine/app:second');
    await ok(['rmi', 'mine/app']);
    assert.equal((await ok(['images', '-q', 'mine/app'])).trim(), '');
  });

  it('refuses to remove an image a container uses (409), and force only untags', async () => {
    await ok(['tag', ref('test/app:v1'), 'used/app:v1']);
    await ok(['tag', ref('test/app:v1'), 'used/app:v2']);
    await ok(['rmi', 'used/app:v2']);
    const cid = (await d.berthOk(['create', '--network', 'none', 'used/app:v1'])).trim();
    try {
      // The last name of an image a container uses: 409 and nothing changes.
      await ok(['rmi', ref('test/app:v1')]);
      const r = await dockerRequest(sock, 'DELETE', '/v1.41/images/used/app:v1');
      assert.equal(r.status, 409, r.body);
      assert.match((r.json as { message: string }).message, /used by container/);
      await inspect('used/app:v1');
      const forced = await ok(['rmi', '-f', 'used/app:v1']);
      assert.match(forced, /Untagged: used\/app:v1/);
      assert.doesNotMatch(forced, /Deleted/);
    } finally {
      await d.berthOk(['rm', '-f', cid]);
    }
    // The image was kept for the container; now it has no name and no user.
    await ok(['image', 'prune', '-f']);
    await ok(['pull', ref('test/app:v1')]);
  });

  it('saves and loads, by file and through a pipe', async () => {
    const file = join(work, 'saved.tar');
    await ok(['save', '-o', file, ref('test/app:v1'), 'busybox:latest']);
    const listing = (await runCommand('/usr/bin/tar', ['-tf', file])).stdout;
    assert.match(listing, /manifest\.json/);
    assert.match(listing, /index\.json/);
    await ok(['rmi', ref('test/app:v1')]);
    const loaded = await ok(['load', '-i', file]);
    assert.match(loaded, new RegExp(`Loaded image: ${ref('test/app:v1').replace(/\./g, '\\.')}`));
    assert.match(loaded, /Loaded image: busybox:latest/);
    assert.equal((await inspect(ref('test/app:v1'))).Id, built.get('test/app:v1')?.configDigest);

    // docker save to stdout is GET /images/{name}/get; load from stdin.
    const piped = await runCommand(
      '/bin/sh',
      ['-c', `${DOCKER} save ${ref('test/app:v1')} | ${DOCKER} load`],
      { env: shellEnv() },
    );
    assert.equal(piped.code, 0, piped.stderr);
    assert.match(piped.stdout, /Loaded image: /);
  });

  it('a load of what is no archive is a 400 and keeps nothing', async () => {
    const beforeStore = imageStore(d);
    const r = await dockerRequest(sock, 'POST', '/v1.41/images/load?quiet=1', {
      raw: Buffer.from('this is not a tar archive at all'.repeat(100)),
      headers: { 'content-type': 'application/x-tar' },
    });
    assert.equal(r.status, 400, r.body);
    assert.equal(typeof (r.json as { message?: unknown }).message, 'string');
    assert.deepEqual(imageStore(d), beforeStore);
  });

  it('imports a root filesystem from a file and from stdin', async () => {
    const tar = tarball([
      { name: 'bin/', type: 'dir', mode: 0o755 },
      { name: 'bin/busybox', body: readFileSync('/bin/busybox'), mode: 0o755 },
      { name: 'hello', body: 'imported\n' },
    ]);
    const file = join(work, 'rootfs.tar');
    writeFileSync(file, tar);
    const out = await ok(['import', file, 'imported/rootfs:v1']);
    assert.match(out.trim(), /^sha256:[0-9a-f]{64}$/);
    const img = await inspect('imported/rootfs:v1');
    assert.equal(img.Id, out.trim());
    assert.equal(img.RootFS.Layers.length, 1);
    const piped = await runCommand(
      '/bin/sh',
      ['-c', `${DOCKER} import - imported/stdin < ${file}`],
      { env: shellEnv() },
    );
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal((await inspect('imported/stdin:latest')).RootFS.Layers[0], img.RootFS.Layers[0]);

    // A body that is no root filesystem: 400, and nothing of it is kept.
    const beforeStore = imageStore(d);
    const bad = await dockerRequest(
      sock,
      'POST',
      '/v1.41/images/create?fromSrc=-&repo=bad/import',
      {
        raw: Buffer.from('not a tarball'),
        headers: { 'content-type': 'application/x-tar' },
      },
    );
    assert.equal(bad.status, 400, bad.body);
    assert.deepEqual(imageStore(d), beforeStore);
    // docker import --change and imports from a URL are refused plainly. The archive is
    // large enough that the CLI is still sending it when the refusal comes: it must get
    // the answer, not a broken pipe.
    const big = join(work, 'big-rootfs.tar');
    writeFileSync(big, tarball([{ name: 'blob', body: randomBytes(24 << 20) }]));
    for (let i = 0; i < 3; i++) {
      const change = await docker([
        'import',
        '--change',
        'CMD ["/bin/sh"]',
        big,
        'imported/changed',
      ]);
      cliError(change, /not supported by berth/);
    }
    await ok(['rmi', 'imported/rootfs:v1', 'imported/stdin']);
  });

  it('pushes to a registry; the registry serves what was pushed', async () => {
    await ok(['tag', ref('test/app:v1'), ref('pushed/app:v9')]);
    const out = await ok(['push', ref('pushed/app:v9')]);
    assert.match(
      out,
      new RegExp(`The push refers to repository \\[${ref('pushed/app').replace(/\./g, '\\.')}\\]`),
    );
    const m = /v9: digest: (sha256:[0-9a-f]{64}) size: (\d+)/.exec(out);
    assert.ok(m, out);
    const manifest = await new Promise<{ status: number; digest: string }>((resolve, reject) => {
      request(
        {
          host: '127.0.0.1',
          port: reg.port,
          path: '/v2/pushed/app/manifests/v9',
          headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
        },
        (res) => {
          res.resume();
          resolve({
            status: res.statusCode ?? 0,
            digest: String(res.headers['docker-content-digest']),
          });
        },
      )
        .on('error', reject)
        .end();
    });
    assert.deepEqual(manifest, { status: 200, digest: m[1] });
    const img = await inspect(ref('pushed/app:v9'));
    assert.ok(img.RepoDigests.includes(`${ref('pushed/app')}@${m[1]}`), img.RepoDigests.join());
    await ok(['rmi', ref('pushed/app:v9')]);
  });

  it('searching is refused plainly; bad requests get Docker error bodies', async () => {
    const s = await docker(['search', 'busybox']);
    cliError(s, /Searching a registry is not supported by berth/);

    const cases: [string, string, number, RegExp][] = [
      ['POST', '/v1.41/images/create?fromImage=Not%20A%20Name&tag=x', 400, /Invalid/],
      ['POST', '/v1.41/images/create', 400, /fromImage/],
      ['POST', '/v1.41/images/create?fromSrc=http://example.invalid/x.tar&repo=x', 501, /URL/],
      ['GET', '/v1.41/images/nothere:v1/json', 404, /No such image: nothere:v1/],
      ['DELETE', '/v1.41/images/nothere:v1', 404, /No such image/],
      ['POST', `/v1.41/images/busybox/tag`, 400, /repo/],
      ['POST', `/v1.41/images/busybox/tag?repo=x&tag=sha256:${'a'.repeat(64)}`, 400, /digest/],
      [
        'GET',
        '/v1.41/images/json?filters=%7B%22nope%22%3A%5B%22x%22%5D%7D',
        400,
        /unknown filter "nope"/,
      ],
      ['GET', '/v1.41/images/json?filters=notjson', 400, /filters/],
      [
        'GET',
        '/v1.41/images/json?filters=%7B%22dangling%22%3A%5B%22maybe%22%5D%7D',
        400,
        /true or false/,
      ],
      ['POST', '/v1.41/images/prune?filters=%7B%22until%22%3A%5B%2210m%22%5D%7D', 501, /until/],
      ['GET', '/v1.41/images/busybox/nonsense', 404, /page not found/],
    ];
    for (const [method, path, status, msg] of cases) {
      const r = await dockerRequest(sock, method, path);
      assert.equal(r.status, status, `${method} ${path}: ${r.body}`);
      const body = r.json as { message?: unknown };
      assert.equal(typeof body.message, 'string', `${method} ${path}: ${r.body}`);
      assert.match(body.message as string, msg, `${method} ${path}`);
    }
    // A pull that fails at the registry: the stream's last message is the error, and
    // nothing is kept.
    const beforeStore = imageStore(d);
    const miss = await docker(['pull', ref('test/nothere:v1')]);
    assert.notEqual(miss.code, 0);
    assert.match(miss.stderr + miss.stdout, /test\/nothere/);
    assert.deepEqual(imageStore(d), beforeStore);
  });

  it('headers of a pull come at once, before the registry answers', async () => {
    const started = Date.now();
    const got = await new Promise<{ status: number; type: string; ms: number }>(
      (resolve, reject) => {
        const req = request(
          {
            socketPath: sock,
            method: 'POST',
            // A port nothing listens on: the error comes after the registry client's retries.
            path: '/v1.41/images/create?fromImage=127.0.0.1:9/x/y&tag=v1',
          },
          (res) => {
            resolve({
              status: res.statusCode ?? 0,
              type: String(res.headers['content-type']),
              ms: Date.now() - started,
            });
            res.destroy();
          },
        );
        req.on('error', reject);
        req.end();
      },
    );
    assert.equal(got.status, 200);
    assert.equal(got.type, 'application/json');
  });
});

describe('docker CLI: login and credentials per pull', () => {
  for (const kind of ['htpasswd', 'token'] as const) {
    it(`${kind}: login checks, pull and push use the CLI's credentials, berthd keeps none`, async () => {
      const reg = await TestRegistry.start(
        kind === 'htpasswd' ? { htpasswd: [ALICE] } : { token: { users: [ALICE] } },
      );
      const work = await mkdtemp('/tmp/bt-dlogin-');
      const cfg = join(work, 'docker-config');
      const d = await TestDaemon.start();
      let layout: OciLayoutBuilder | undefined;
      try {
        ({ layout } = await seedRegistry(reg, [{ repo: 'private/app', tag: 'v1' }]));
        const docker = (args: readonly string[], input?: string) =>
          dockerCli(d, cfg, args, input === undefined ? {} : { input });
        const ref = `${reg.host}/private/app:v1`;

        const anon = await docker(['pull', ref]);
        assert.notEqual(anon.code, 0, 'no credentials, no pull');
        assert.match(anon.stderr + anon.stdout, /credentials|auth|denied/i);

        const wrong = await docker(
          ['login', reg.host, '-u', 'alice', '--password-stdin'],
          'wrong\n',
        );
        cliError(
          wrong,
          /^Error response from daemon: Login to \S+ failed: the (registry|token server) refused the username or password of "alice"$/m,
        );
        const login = await docker(
          ['login', reg.host, '-u', ALICE.username, '--password-stdin'],
          `${ALICE.password}\n`,
        );
        assert.equal(login.code, 0, login.stderr);
        assert.match(login.stdout, /Login Succeeded/);
        assert.equal(existsSync(join(d.root, 'auth.json')), false, 'berthd keeps no credentials');
        assert.ok(existsSync(join(cfg, 'config.json')), 'the docker CLI keeps them');

        const pulled = await docker(['pull', ref]);
        assert.equal(pulled.code, 0, pulled.stderr);
        assert.match(pulled.stdout, /Downloaded newer image/);
        const pushRef = `${reg.host}/private/copy:v2`;
        assert.equal((await docker(['tag', ref, pushRef])).code, 0);
        const pushed = await docker(['push', pushRef]);
        assert.equal(pushed.code, 0, pushed.stderr);
        assert.match(pushed.stdout, /v2: digest: sha256:/);

        // Logged out, the CLI sends nothing, and berthd has nothing of its own.
        assert.equal((await docker(['logout', reg.host])).code, 0);
        assert.equal((await docker(['rmi', ref, pushRef])).code, 0);
        const after = await docker(['pull', ref]);
        assert.notEqual(after.code, 0, 'the credentials were for those requests only');
      } finally {
        await removeDockerLeftovers(d);
        await d.destroy();
        await reg.stop();
        await layout?.remove();
        await rm(work, { recursive: true, force: true });
      }
    });
  }
});

describe('docker CLI: volumes and networks', () => {
  let d: TestDaemon;
  let work: string;
  let cfg: string;
  let sock: string;
  const ok = async (args: readonly string[]) => {
    const r = await dockerCli(d, cfg, args);
    assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    work = await mkdtemp('/tmp/bt-dvol-');
    cfg = join(work, 'docker-config');
    d = await TestDaemon.start();
    sock = dockerSocketOf(d);
  });
  after(async () => {
    await removeDockerLeftovers(d);
    await d.destroy();
    await rm(work, { recursive: true, force: true });
  });

  it('volume create, ls with filters, inspect, rm and prune', async () => {
    assert.equal(
      (await ok(['volume', 'create', '--label', 'team=a', '--opt', 'size=16m', 'sized'])).trim(),
      'sized',
    );
    assert.equal((await ok(['volume', 'create', '--label', 'team=b', 'plain'])).trim(), 'plain');
    const anon = (await ok(['volume', 'create'])).trim();
    assert.match(anon, /^[0-9a-f]{64}$/);
    const names = (args: string[]) =>
      ok(['volume', 'ls', '-q', ...args]).then((s) => s.trim().split('\n').filter(Boolean).sort());
    assert.deepEqual(await names([]), [anon, 'plain', 'sized'].sort());
    assert.deepEqual(await names(['--filter', 'label=team=a']), ['sized']);
    assert.deepEqual(await names(['--filter', 'label=team']), ['plain', 'sized']);
    assert.deepEqual(await names(['--filter', 'name=siz']), ['sized']);
    const v = (
      JSON.parse(await ok(['volume', 'inspect', 'sized'])) as Record<string, unknown>[]
    )[0];
    assert.ok(v);
    assert.equal(v['Name'], 'sized');
    assert.equal(v['Driver'], 'local');
    assert.equal(v['Scope'], 'local');
    assert.deepEqual(v['Labels'], { team: 'a' });
    assert.deepEqual(v['Options'], { size: '16m' });
    assert.match(String(v['Mountpoint']), /\/volumes\/sized\/_data$/);

    // A container that names a volume holds it: not dangling, not removable, not pruned.
    const cid = (
      await d.berthOk(['create', '--network', 'none', '-v', 'plain:/data', 'busybox'])
    ).trim();
    try {
      assert.deepEqual(await names(['--filter', 'dangling=true']), [anon, 'sized'].sort());
      assert.deepEqual(await names(['--filter', 'dangling=false']), ['plain']);
      const rmUsed = await dockerRequest(sock, 'DELETE', '/v1.41/volumes/plain?force=1');
      assert.equal(rmUsed.status, 409, rmUsed.body);
      const pruned = await ok(['volume', 'prune', '-f', '--filter', 'label=team']);
      assert.match(pruned, /sized/);
      assert.doesNotMatch(pruned, /plain/);
      assert.deepEqual(await names([]), [anon, 'plain'].sort());
    } finally {
      await d.berthOk(['rm', '-f', cid]);
    }
    await ok(['volume', 'rm', 'plain']);
    const gone = await dockerRequest(sock, 'GET', '/v1.41/volumes/plain');
    assert.equal(gone.status, 404);
    assert.match((gone.json as { message: string }).message, /No such volume: plain/);
    assert.equal((await dockerRequest(sock, 'DELETE', '/v1.41/volumes/plain?force=1')).status, 204);
    await ok(['volume', 'prune', '-f']);
    assert.deepEqual(await names([]), []);
  });

  it('a volume berth cannot make is refused whole', async () => {
    const cases: [unknown, number, RegExp][] = [
      [{ Name: 'nfsvol', Driver: 'nfs' }, 501, /driver "nfs"/],
      [{ Name: 'optvol', DriverOpts: { type: 'tmpfs', device: 'tmpfs' } }, 501, /option "type"/],
      [{ Name: 'sizevol', DriverOpts: { size: 'huge' } }, 400, /size/],
      [{ Name: 'x' }, 400, /Name/],
      [{ Name: 'labels', Labels: { a: 1 } }, 400, /Labels\.a/],
    ];
    for (const [body, status, msg] of cases) {
      const r = await dockerRequest(sock, 'POST', '/v1.41/volumes/create', { body });
      assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.body}`);
      assert.match((r.json as { message: string }).message, msg);
    }
    assert.deepEqual((await dockerRequest(sock, 'GET', '/v1.41/volumes')).json, {
      Volumes: [],
      Warnings: null,
    });
    assert.deepEqual(readdirSync(join(d.root, 'volumes')), []);
  });

  it('network create, ls with filters, inspect, rm and prune', async () => {
    const n = 1 + Math.floor(Math.random() * 250);
    const subnet = `10.231.${n}.0/24`;
    const id = (
      await ok([
        'network',
        'create',
        '--subnet',
        subnet,
        '--gateway',
        `10.231.${n}.254`,
        '--label',
        'team=a',
        'dnet1',
      ])
    ).trim();
    assert.match(id, /^[0-9a-f]{64}$/);
    await ok(['network', 'create', '--label', 'team=b', 'dnet2']);
    const names = (args: string[]) =>
      ok(['network', 'ls', '--format', '{{.Name}}', ...args]).then((s) =>
        s.trim().split('\n').filter(Boolean).sort(),
      );
    assert.deepEqual(await names([]), ['bridge', 'dnet1', 'dnet2']);
    assert.deepEqual(await names(['--filter', 'label=team=a']), ['dnet1']);
    assert.deepEqual(await names(['--filter', 'type=custom']), ['dnet1', 'dnet2']);
    assert.deepEqual(await names(['--filter', 'name=dnet']), ['dnet1', 'dnet2']);
    assert.deepEqual(await names(['--filter', `id=${id.slice(0, 10)}`]), ['dnet1']);
    assert.deepEqual(await names(['--filter', 'dangling=true']), ['dnet1', 'dnet2']);
    const net = (
      JSON.parse(await ok(['network', 'inspect', 'dnet1'])) as Record<string, unknown>[]
    )[0];
    assert.ok(net);
    assert.equal(net['Id'], id);
    assert.equal(net['Driver'], 'bridge');
    assert.equal(net['Scope'], 'local');
    assert.deepEqual(net['IPAM'], {
      Driver: 'default',
      Options: {},
      Config: [{ Subnet: subnet, Gateway: `10.231.${n}.254` }],
    });
    assert.deepEqual(net['Labels'], { team: 'a' });
    assert.deepEqual(net['Options'], {});
    assert.deepEqual(net['Containers'], {});

    const dup = await dockerCli(d, cfg, ['network', 'create', 'dnet1']);
    cliError(dup, /already exists/);

    // A container on dnet2 holds it; connecting it elsewhere is refused plainly, connecting
    // it where it is changes nothing.
    const cid = (await d.berthOk(['create', '--network', 'dnet2', 'busybox'])).trim();
    try {
      const elsewhere = await dockerCli(d, cfg, ['network', 'connect', 'dnet1', cid]);
      cliError(elsewhere, /one network, chosen when it is created/);
      const same = await dockerRequest(sock, 'POST', '/v1.41/networks/dnet2/connect', {
        body: { Container: cid, EndpointConfig: { Aliases: ['web'] } },
      });
      assert.equal(same.status, 200, same.body);
      const disc = await dockerCli(d, cfg, ['network', 'disconnect', 'dnet2', cid]);
      cliError(disc, /not supported by berth/);
      const inUse = await dockerRequest(sock, 'DELETE', '/v1.41/networks/dnet2');
      assert.equal(inUse.status, 409, inUse.body);
      const pruned = await ok(['network', 'prune', '-f']);
      assert.match(pruned, /dnet1/);
      assert.doesNotMatch(pruned, /dnet2/);
    } finally {
      await d.berthOk(['rm', '-f', cid]);
    }
    await ok(['network', 'rm', 'dnet2']);
    const gone = await dockerRequest(sock, 'GET', '/v1.41/networks/dnet2');
    assert.equal(gone.status, 404);
    assert.match((gone.json as { message: string }).message, /No such network: dnet2/);
    assert.deepEqual(await names([]), ['bridge']);
  });

  it('a network berth cannot make is refused whole', async () => {
    const cases: [unknown, number, RegExp][] = [
      [{ Name: 'ov', Driver: 'overlay' }, 501, /driver "overlay"/],
      [{ Name: 'int', Internal: true }, 501, /Internal/],
      [{ Name: 'v6', EnableIPv6: true }, 501, /IPv6/],
      [{ Name: 'opt', Options: { 'com.docker.network.bridge.name': 'br-x' } }, 501, /option/],
      [
        {
          Name: 'two',
          IPAM: { Config: [{ Subnet: '10.232.1.0/24' }, { Subnet: '10.232.2.0/24' }] },
        },
        501,
        /one subnet/,
      ],
      [{ Name: 'badnet', IPAM: { Config: [{ Subnet: '10.232.1.7/24' }] } }, 400, /host bits/],
      [{ Name: 'bad name!' }, 400, /Name/],
      [{ Name: 'lbl', Labels: ['a'] }, 400, /Labels/],
      [{ Name: 'bridge' }, 409, /already exists/],
    ];
    for (const [body, status, msg] of cases) {
      const r = await dockerRequest(sock, 'POST', '/v1.41/networks/create', { body });
      assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.body}`);
      assert.match((r.json as { message: string }).message, msg);
    }
    const list = (await dockerRequest(sock, 'GET', '/v1.41/networks')).json as { Name: string }[];
    assert.deepEqual(
      list.map((n) => n.Name),
      ['bridge'],
    );
    const builtin = await dockerRequest(sock, 'DELETE', '/v1.41/networks/bridge');
    assert.equal(builtin.status, 409);
  });
});
