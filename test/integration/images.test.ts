// Images end to end: a real berthd pulls from Debian's docker-registry on loopback (images
// built here with real tar layers and pushed by skopeo), unpacks each layer once, runs
// containers from them with the image config applied, pushes, saves and loads.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from '../../src/util/exec.ts';
import { TestDaemon } from '../helpers/daemon.ts';
import {
  CuttingProxy,
  OciLayoutBuilder,
  TestRegistry,
  type BuiltImage,
  type BuiltLayer,
  type RegistryUser,
} from '../helpers/registry.ts';
import { tarball, type Entry } from '../fixtures/layers/tar-writer.ts';
import { gzipSync } from 'node:zlib';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const ALICE: RegistryUser = { username: 'alice', password: 'correct horse' };

interface ImageInspect {
  Id: string;
  RepoTags: string[];
  RepoDigests: string[];
  Architecture: string;
  Os: string;
  Config: {
    Env: string[];
    Cmd: string[] | null;
    Entrypoint: string[] | null;
    WorkingDir: string;
    User: string;
    ExposedPorts: Record<string, unknown>;
    Labels: Record<string, string>;
    StopSignal: string;
    Healthcheck?: { Test: string[] };
  };
  RootFS: { Layers: string[] };
}

interface ContainerInspect {
  Config: { StopSignal?: string; Labels: Record<string, string>; Healthcheck?: unknown };
  HostConfig: { PortBindings?: Record<string, unknown> };
}

async function inspectImage(d: TestDaemon, name: string): Promise<ImageInspect> {
  return (
    JSON.parse(await d.berthOk(['image', 'inspect', name])) as ImageInspect[]
  )[0] as ImageInspect;
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const short = (digest: string): string => digest.slice(7, 19);

let work = '';
let layout: OciLayoutBuilder;
let app: BuiltImage;
let app2: BuiltImage;
let arm: BuiltImage;
let big: BuiltImage;
const randomData = randomBytes(3 << 20);

// A gzipped layer from tar entries written here, so modes (an executable busybox) are as
// given. Gzip throughout: skopeo compresses a plain layer on its way to a registry, which
// would change its digest.
async function gzLayer(l: OciLayoutBuilder, entries: readonly Entry[]): Promise<BuiltLayer> {
  const tar = tarball(entries);
  const b = await l.blob(gzipSync(tar));
  return {
    ...b,
    diffId: sha256(tar),
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    tar,
  };
}

const dir = (name: string): Entry => ({ name, type: 'dir', mode: 0o755 });

async function buildImages(): Promise<void> {
  layout = await OciLayoutBuilder.create();
  const base = await gzLayer(layout, [
    dir('bin/'),
    { name: 'bin/busybox', body: readFileSync('/bin/busybox'), mode: 0o755 },
    ...['sh', 'id', 'cat', 'ls', 'echo', 'pwd'].map((n): Entry => ({
      name: `bin/${n}`,
      type: 'symlink',
      linkname: 'busybox',
    })),
    dir('etc/'),
    { name: 'etc/motd', body: 'hello from berth\n' },
    dir('a/'),
    { name: 'a/file1', body: 'shared by a hard link\n' },
    { name: 'a/hard', type: 'link', linkname: 'a/file1' },
    dir('dir/'),
    { name: 'dir/x', body: 'x' },
    { name: 'dir/y', body: 'y' },
    { name: 'remove-me', body: 'gone in the next layer' },
    dir('data/'),
    { name: 'data/random', body: randomData },
  ]);
  const changes = await gzLayer(layout, [
    { name: '.wh.remove-me', body: '' },
    dir('dir/'),
    { name: 'dir/.wh..wh..opq', body: '' },
    { name: 'dir/z', body: 'only z is left in dir' },
    dir('a/'),
    { name: 'a/new', body: 'new' },
  ]);
  const config = {
    Env: ['PATH=/bin', 'GREETING=hi'],
    Entrypoint: ['/bin/sh', '-c'],
    Cmd: ['echo "$GREETING from $(pwd) as $(id -u)"'],
    WorkingDir: '/a',
    User: '1000',
    ExposedPorts: { '8080/tcp': {} },
    Labels: { 'org.example.team': 'storage' },
    StopSignal: 'SIGINT',
    Healthcheck: { Test: ['CMD-SHELL', 'true'], Interval: 2e9, Retries: 2 },
  };
  app = await layout.image([base, changes], { os: 'linux', architecture: 'amd64' }, config);
  const extra = await gzLayer(layout, [dir('etc/'), { name: 'etc/v2', body: 'two\n' }]);
  app2 = await layout.image([base, changes, extra], { os: 'linux', architecture: 'amd64' }, config);
  const armLayer = await gzLayer(layout, [{ name: 'arch', body: 'arm64\n' }]);
  arm = await layout.image([armLayer], { os: 'linux', architecture: 'arm64', variant: 'v8' });
  const bigLayer = await gzLayer(layout, [
    dir('big/'),
    { name: 'big/blob', body: randomBytes(4 << 20) },
  ]);
  big = await layout.image([base, bigLayer], { os: 'linux', architecture: 'amd64' }, config);
  const index = await layout.index([app, arm]);
  for (const [tag, i] of [
    ['v1', app],
    ['v2', app2],
    ['big', big],
  ] as const) {
    layout.tag(tag, { digest: i.manifestDigest, size: i.manifestSize, mediaType: OCI_MANIFEST });
  }
  layout.tag('multi', { ...index, mediaType: OCI_INDEX });
  await layout.writeIndex();
}

// A one-layer image whose layer is given as raw tar bytes, in its own layout.
async function rawImage(tar: Buffer): Promise<OciLayoutBuilder> {
  const l = await OciLayoutBuilder.create();
  const blob = await l.blob(gzipSync(tar));
  const layer: BuiltLayer = {
    ...blob,
    diffId: sha256(tar),
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    tar,
  };
  const img = await l.image([layer], { os: 'linux', architecture: 'amd64' });
  l.tag('v1', { digest: img.manifestDigest, size: img.manifestSize, mediaType: OCI_MANIFEST });
  await l.writeIndex();
  return l;
}

// What berth keeps, to check that a failed pull kept nothing.
function storeState(d: TestDaemon): { blobs: string[]; layers: string[]; partial: string[] } {
  const ls = (p: string) =>
    existsSync(join(d.root, 'images', p)) ? readdirSync(join(d.root, 'images', p)).sort() : [];
  return { blobs: ls('blobs/sha256'), layers: ls('layers'), partial: ls('blobs/partial') };
}

before(async () => {
  work = await mkdtemp('/tmp/bt-images-');
  await buildImages();
});
after(async () => {
  await layout.remove();
  await rm(work, { recursive: true, force: true });
});

describe('pull from a registry, run, push, save and load', () => {
  let d: TestDaemon;
  let reg: TestRegistry;
  let ref: (s: string) => string;

  before(async () => {
    reg = await TestRegistry.start();
    ref = (s) => `${reg.host}/${s}`;
    await reg.push(layout.dir, 'v1', 'test/app:v1');
    await reg.push(layout.dir, 'v2', 'test/app:v2', { format: 'v2s2' });
    await reg.push(layout.dir, 'multi', 'test/app:multi', { all: true });
    await reg.push(layout.dir, 'big', 'test/big:v1');
    await reg.push(layout.dir, 'v1', 'test/auto:v1');
    d = await TestDaemon.start();
  });
  after(async () => {
    await d.destroy();
    await reg.stop();
  });

  it('pulls by tag; the root is the layers as built, file by file', async () => {
    const out = await d.berthOk(['pull', ref('test/app:v1')]);
    assert.match(out, /Pull complete/);
    assert.match(out, /Status: Downloaded newer image for 127\.0\.0\.1:\d+\/test\/app:v1/);
    const img = await inspectImage(d, ref('test/app:v1'));
    assert.equal(img.Id, app.configDigest);
    assert.deepEqual(
      img.RootFS.Layers,
      app.layers.map((l) => l.diffId),
    );
    // The root is mounted when a container first needs it.
    const run = await d.berth(['run', '--rm', '--network', 'none', ref('test/app:v1')]);
    assert.equal(run.code, 0, run.stderr);
    const root = join(d.root, 'images', img.Id.slice(7), 'rootfs');
    assert.equal(readFileSync(join(root, 'etc/motd'), 'utf8'), 'hello from berth\n');
    assert.ok(readFileSync(join(root, 'data/random')).equals(randomData));
    assert.equal(existsSync(join(root, 'remove-me')), false, 'the whiteout hides the file');
    assert.deepEqual(readdirSync(join(root, 'dir')), ['z'], 'the opaque directory hides x, y');
    assert.equal(statSync(join(root, 'a/hard')).ino, statSync(join(root, 'a/file1')).ino);
    assert.equal(readlinkSync(join(root, 'bin/sh')), 'busybox');
    assert.equal(readFileSync(join(root, 'a/new'), 'utf8'), 'new');
    // The mount points runc needs come from the init layer, not from the image's layers.
    for (const p of ['proc', 'sys', 'dev', 'etc/hosts', 'etc/resolv.conf'])
      assert.ok(existsSync(join(root, p)), p);
    for (const l of readdirSync(join(d.root, 'images', 'layers'))) {
      assert.equal(
        existsSync(join(d.root, 'images', 'layers', l, 'proc')),
        false,
        'layers are never written',
      );
    }
  });

  it('runs a container with the image config applied', async () => {
    const r = await d.berth(['run', '--rm', '--network', 'none', ref('test/app:v1')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hi from /a as 1000\n');
    const id = (await d.berthOk(['create', '-P', '--name', 'cfg', ref('test/app:v1')])).trim();
    const c = await d.inspect<ContainerInspect>(id);
    assert.equal(c.Config.StopSignal, 'SIGINT');
    assert.equal(c.Config.Labels['org.example.team'], 'storage');
    assert.ok(c.Config.Healthcheck, 'the image healthcheck applies');
    assert.ok(JSON.stringify(c).includes('8080/tcp'), '-P publishes the exposed port');
    const img = await inspectImage(d, ref('test/app:v1'));
    assert.deepEqual(img.Config.Entrypoint, ['/bin/sh', '-c']);
    assert.equal(img.Config.WorkingDir, '/a');
    assert.equal(img.Config.User, '1000');
    assert.deepEqual(Object.keys(img.Config.ExposedPorts), ['8080/tcp']);
    assert.deepEqual(img.Config.Healthcheck?.Test, ['CMD-SHELL', 'true']);
    // A container holds its image.
    const rmi = await d.berth(['rmi', ref('test/app:v1')]);
    assert.notEqual(rmi.code, 0);
    assert.match(rmi.stderr, /used by container/);
    await d.berthOk(['rm', id]);
  });

  it('a mount at a path the image lacks is made outside the image; the root stays read-only', async () => {
    const host = await mkdtemp('/tmp/bt-bind-');
    try {
      const r = await d.berth([
        'run',
        '--rm',
        '--network',
        'none',
        '-v',
        `${host}:/brand/new/place`,
        '--tmpfs',
        '/another',
        '--user',
        '0',
        '--entrypoint',
        '/bin/sh',
        ref('test/app:v1'),
        '-c',
        'echo ok > /brand/new/place/f && ls -d /another && (echo x > /x 2>/dev/null && echo wrote || echo read-only)',
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '/another\nread-only\n');
      assert.equal(readFileSync(join(host, 'f'), 'utf8'), 'ok\n');
      const root = join(d.root, 'images', app.configDigest.slice(7), 'rootfs');
      for (const p of ['brand', 'another', 'x']) assert.equal(existsSync(join(root, p)), false, p);
      for (const l of readdirSync(join(d.root, 'images', 'layers'))) {
        assert.equal(existsSync(join(d.root, 'images', 'layers', l, 'brand')), false);
      }
    } finally {
      await rm(host, { recursive: true, force: true });
    }
  });

  it('run pulls an image that is not here, unless --pull never', async () => {
    const never = await d.berth(['run', '--rm', '--pull', 'never', ref('test/auto:v1')]);
    assert.notEqual(never.code, 0);
    assert.match(never.stderr, /No such image/);
    const r = await d.berth(['run', '--rm', '--network', 'none', ref('test/auto:v1')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Unable to find image '.*test\/auto:v1' locally/);
    assert.equal(r.stdout, 'hi from /a as 1000\n');
  });

  it('pulls by digest, and an image that is here is not downloaded again', async () => {
    const again = await d.berthOk(['pull', ref('test/app:v1')]);
    assert.match(again, /Image is up to date/);
    const out = await d.berthOk(['pull', ref(`test/app@${app.manifestDigest}`)]);
    assert.doesNotMatch(out, /Downloading/);
    const img = await inspectImage(d, ref(`test/app@${app.manifestDigest}`));
    assert.equal(img.Id, app.configDigest);
    assert.ok(img.RepoDigests.includes(`${reg.host}/test/app@${app.manifestDigest}`));
    const listed = await d.berthOk(['images', '--digests']);
    assert.ok(listed.includes(app.manifestDigest), listed);
  });

  it('a second image sharing layers downloads and unpacks only the new one', async () => {
    const proxy = await CuttingProxy.start(reg.port, Infinity, 0);
    try {
      const layersBefore = readdirSync(join(d.root, 'images', 'layers')).length;
      const out = await d.berthOk(['pull', `127.0.0.1:${proxy.port}/test/app:v2`]);
      for (const l of app.layers)
        assert.match(out, new RegExp(`${short(l.digest)}: Already exists`));
      const blobGets = proxy.requests.filter((r) => /^GET \S+\/blobs\//.test(r));
      const newLayer = app2.layers[2];
      assert.ok(newLayer);
      assert.deepEqual(
        blobGets.filter((r) => r.includes('sha256:') && !r.includes(app2.configDigest)),
        [`GET /v2/test/app/blobs/${newLayer.digest}`],
        'only the new layer is fetched',
      );
      assert.equal(readdirSync(join(d.root, 'images', 'layers')).length, layersBefore + 1);
      const r = await d.berth([
        'run',
        '--rm',
        '--network',
        'none',
        '--entrypoint',
        '/bin/cat',
        `127.0.0.1:${proxy.port}/test/app:v2`,
        '/etc/v2',
        '/etc/motd',
      ]);
      assert.equal(r.stdout, 'two\nhello from berth\n', r.stderr);
    } finally {
      await proxy.stop();
    }
  });

  it('selects the host platform from an index, or the one asked for', async () => {
    await d.berthOk(['pull', ref('test/app:multi')]);
    assert.equal((await inspectImage(d, ref('test/app:multi'))).Id, app.configDigest);
    await d.berthOk(['pull', '--platform', 'linux/arm64', ref('test/app:multi')]);
    const a = await inspectImage(d, ref('test/app:multi'));
    assert.equal(a.Id, arm.configDigest);
    assert.equal(a.Architecture, 'arm64');
  });

  it('resumes a layer when the connection is cut mid-blob', async () => {
    const proxy = await CuttingProxy.start(reg.port, 1_500_000, 2);
    try {
      const out = await d.berthOk(['pull', `127.0.0.1:${proxy.port}/test/big:v1`]);
      assert.match(out, /Downloaded newer image/);
      assert.ok(proxy.cuts >= 1, 'the connection was cut');
      assert.ok(
        proxy.ranges.some((r) => /^bytes=[1-9]\d*-$/.test(r)),
        `a Range request resumed it (${proxy.ranges.join(', ')})`,
      );
      assert.equal(storeState(d).partial.length, 0);
    } finally {
      await proxy.stop();
    }
  });

  it('refuses a corrupted blob and keeps nothing of it', async () => {
    const l = await rawImage(
      tarball([
        { name: 'unique/', type: 'dir' },
        { name: 'unique/file', body: randomBytes(300_000) },
      ]),
    );
    try {
      await reg.push(l.dir, 'v1', 'test/corrupt:v1');
      const manifest = JSON.parse(
        readFileSync(join(l.dir, 'blobs/sha256', indexManifest(l).slice(7)), 'utf8'),
      ) as { layers: { digest: string }[] };
      const digest = manifest.layers[0]?.digest ?? '';
      const fh = await open(reg.blobDataPath(digest), 'r+');
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, 100_000);
      b[0] = (b[0] ?? 0) ^ 0xff;
      await fh.write(b, 0, 1, 100_000);
      await fh.close();
      const before = storeState(d);
      const r = await d.berth(['pull', ref('test/corrupt:v1')]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /digest mismatch/);
      const after = storeState(d);
      assert.deepEqual(after.layers, before.layers);
      assert.deepEqual(after.partial, []);
      assert.ok(!after.blobs.includes(digest.slice(7)), 'the bad blob is not kept');
      assert.doesNotMatch(await d.berthOk(['images']), /corrupt/);
    } finally {
      await l.remove();
    }
  });

  it('refuses layers that reach outside, and nothing outside changes', async () => {
    const marker = join(work, 'escaped');
    const evil: [string, Buffer][] = [
      ['dotdot', tarball([{ name: '../../../../../../..' + marker, body: 'x' }])],
      [
        'symlink-parent',
        tarball([
          { name: 'link', type: 'symlink', linkname: work },
          { name: 'link/escaped', body: 'x' },
        ]),
      ],
      ['hardlink-out', tarball([{ name: 'h', type: 'link', linkname: '../../../../etc/passwd' }])],
    ];
    for (const [name, tar] of evil) {
      const l = await rawImage(tar);
      try {
        await reg.push(l.dir, 'v1', `test/evil-${name}:v1`);
        const before = storeState(d);
        const r = await d.berth(['pull', ref(`test/evil-${name}:v1`)]);
        assert.notEqual(r.code, 0, name);
        assert.match(r.stderr, /Layer|layer/, name);
        assert.equal(existsSync(marker), false, name);
        assert.deepEqual(storeState(d).layers, before.layers, name);
        assert.doesNotMatch(await d.berthOk(['images']), new RegExp(`evil-${name}`));
      } finally {
        await l.remove();
      }
    }
  });

  it('tags, shows history, untags and deletes', async () => {
    await d.berthOk(['tag', ref('test/app:v1'), 'mine:1']);
    assert.equal((await inspectImage(d, 'mine:1')).Id, app.configDigest);
    const history = await d.berthOk([
      'history',
      '--no-trunc',
      '--format',
      '{{.CreatedBy}}',
      'mine:1',
    ]);
    assert.deepEqual(history.trim().split('\n'), ['layer 1', 'layer 0']);
    const untag = await d.berthOk(['rmi', 'mine:1']);
    assert.equal(untag.trim(), 'Untagged: mine:1');
    assert.equal((await inspectImage(d, ref('test/app:v1'))).Id, app.configDigest);
  });

  it('pushes to the registry, and what is pushed pulls back the same', async () => {
    await d.berthOk(['pull', ref('test/app:v2')]);
    await d.berthOk(['tag', ref('test/app:v2'), ref('pushed/app:1')]);
    const out = await d.berthOk(['push', ref('pushed/app:1')]);
    assert.match(out, /1: digest: sha256:[0-9a-f]{64} size: \d+/);
    const second = await d.berthOk(['push', ref('pushed/app:1')]);
    assert.match(second, /Layer already exists/);
    await d.berthOk(['rmi', ref('pushed/app:1')]);
    const id = (await inspectImage(d, ref('test/app:v2'))).Id;
    await d.berthOk(['pull', ref('pushed/app:1')]);
    assert.equal((await inspectImage(d, ref('pushed/app:1'))).Id, id);
    // The built-in image, made here, goes to a registry too.
    await d.berthOk(['tag', 'busybox', ref('pushed/busybox:1')]);
    await d.berthOk(['push', ref('pushed/busybox:1')]);
    assert.equal(
      (await d.berthOk(['rmi', ref('pushed/busybox:1')])).trim(),
      `Untagged: ${ref('pushed/busybox:1')}`,
    );
  });

  it('save then load round-trips, by name and by id', async () => {
    const file = join(work, 'saved.tar');
    await d.berthOk(['save', '-o', file, ref('test/app:v1'), 'busybox']);
    const appId = (await inspectImage(d, ref('test/app:v1'))).Id;
    await d.berthOk(['rmi', '-f', ref('test/app:v1'), ref('test/app:multi')]);
    const loaded = await d.berthOk(['load', '-i', file]);
    assert.match(loaded, new RegExp(`Loaded image: 127\\.0\\.0\\.1:\\d+/test/app:v1`));
    assert.match(loaded, /Loaded image: busybox:latest/);
    assert.equal((await inspectImage(d, ref('test/app:v1'))).Id, appId);
    const r = await d.berth(['run', '--rm', '--network', 'none', ref('test/app:v1')]);
    assert.equal(r.stdout, 'hi from /a as 1000\n', r.stderr);
    // skopeo reads what berth wrote.
    await execFile([
      'skopeo',
      'copy',
      '-q',
      `docker-archive:${file}:${reg.host}/test/app:v1`,
      `oci:${join(work, 'from-save')}:x`,
    ]);
  });

  it('loads a Docker-format archive made by skopeo', async () => {
    const file = join(work, 'skopeo.tar');
    await execFile([
      'skopeo',
      'copy',
      '-q',
      `oci:${layout.dir}:v2`,
      `docker-archive:${file}:skopeo/app:v2`,
    ]);
    const out = await d.berthOk(['load', '-i', file]);
    assert.match(out, /Loaded image: skopeo\/app:v2/);
    const r = await d.berth([
      'run',
      '--rm',
      '--network',
      'none',
      '--entrypoint',
      '/bin/cat',
      'skopeo/app:v2',
      '/etc/v2',
    ]);
    assert.equal(r.stdout, 'two\n', r.stderr);
    const bad = await d.berth(['load', '-i', '/etc/hostname']);
    assert.notEqual(bad.code, 0);
  });

  it('prune -a removes what no container uses, and the store is empty of it', async () => {
    const keep = await d.runDetached(['--network', 'none', 'busybox', 'sleep', '60']);
    const out = await d.berthOk(['image', 'prune', '-a', '-f']);
    assert.match(out, /Total reclaimed space/);
    const images = await d.berthOk(['images', '--format', '{{.Repository}}']);
    assert.deepEqual(images.trim().split('\n'), ['busybox']);
    await d.berthOk(['rm', '-f', keep]);
    // Only the busybox layer is left, and only its blobs.
    assert.equal(storeState(d).layers.length, 1);
  });
});

describe('pull with credentials', () => {
  it('htpasswd: asks for a login, refuses wrong credentials, pulls with the saved ones', async () => {
    const reg = await TestRegistry.start({ htpasswd: [ALICE] });
    const d = await TestDaemon.start();
    try {
      await reg.push(layout.dir, 'v1', 'test/private:v1');
      const anon = await d.berth(['pull', `${reg.host}/test/private:v1`]);
      assert.notEqual(anon.code, 0);
      assert.match(anon.stderr, /berth login/);
      const wrong = await d.berth(['login', '-u', 'alice', '--password-stdin', reg.host], {
        input: 'wrong\n',
      });
      assert.notEqual(wrong.code, 0);
      assert.match(wrong.stderr, /refused/);
      const ok = await d.berthOk(['login', '-u', 'alice', '-p', ALICE.password, reg.host]);
      assert.match(ok, /Login Succeeded/);
      assert.equal(statSync(join(d.root, 'auth.json')).mode & 0o777, 0o600);
      await d.berthOk(['pull', `${reg.host}/test/private:v1`]);
      assert.match(await d.berthOk(['logout', reg.host]), /Removing login credentials/);
    } finally {
      await d.destroy();
      await reg.stop();
    }
  });

  it('token auth: gets a token from the token server for the pull', async () => {
    const reg = await TestRegistry.start({ token: { users: [ALICE] } });
    const d = await TestDaemon.start();
    try {
      await reg.push(layout.dir, 'v1', 'test/tok:v1');
      await d.berthOk(['login', '-u', 'alice', '-p', ALICE.password, reg.host]);
      await d.berthOk(['pull', `${reg.host}/test/tok:v1`]);
      assert.ok(
        reg.tokenServer?.scopes.some((s) => s.includes('repository:test/tok:pull')),
        'a pull-scoped token was asked for',
      );
    } finally {
      await d.destroy();
      await reg.stop();
    }
  });
});

function indexManifest(l: OciLayoutBuilder): string {
  const idx = JSON.parse(readFileSync(join(l.dir, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  return idx.manifests[0]?.digest ?? '';
}
