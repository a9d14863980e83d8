// The registry client against Debian's real docker-registry, images built here (real tar
// layers: a whiteout, an opaque directory, a hard link, a symlink; an index of amd64 and
// arm64) and pushed with skopeo, as OCI and as Docker schema 2. No berthd: this is the
// library the engine's pull is built on.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm, writeFile, copyFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { CredentialStore } from '../../src/images/credentials.ts';
import { parseReference, type Reference } from '../../src/images/reference.ts';
import { RegistryClient, type ResolvedImage } from '../../src/images/registry.ts';
import { BerthError } from '../../src/util/errors.ts';
import { execFile } from '../../src/util/exec.ts';
import {
  OciLayoutBuilder,
  TestRegistry,
  type BuiltImage,
  type BuiltLayer,
  type RegistryUser,
} from '../helpers/registry.ts';

const ALICE: RegistryUser = { username: 'alice', password: 'correct horse' };
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

let work = '';
let layout: OciLayoutBuilder;
let amd64: BuiltImage;
let arm64: BuiltImage;

function isCode(code: string, re?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof BerthError, `a BerthError, not ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return true;
  };
}

// The image every registry below gets: three layers on amd64, one on arm64.
async function buildImages(): Promise<void> {
  layout = await OciLayoutBuilder.create();
  const base = await layout.layer({
    'bin/busybox': readFileSync('/bin/busybox'),
    'bin/sh': 'symlink:busybox',
    'etc/motd': 'hello from berth\n',
    'a/file1': 'shared by a hard link\n',
    'a/hard': 'hardlink:a/file1',
    'dir/x': 'x',
    'dir/y': 'y',
    'remove-me': 'gone in the next layer',
    'data/random': randomBytes(4 << 20),
  });
  const changes = await layout.layer({
    '.wh.remove-me': '',
    'dir/.wh..wh..opq': '',
    'dir/z': 'only z is left in dir',
    'a/new': 'new',
  });
  const plain = await layout.layer(
    { 'etc/layer3': 'three', 'data/more': randomBytes(1 << 20) },
    'none',
  );
  amd64 = await layout.image(
    [base, changes, plain],
    { os: 'linux', architecture: 'amd64' },
    {
      Cmd: ['/bin/sh'],
      WorkingDir: '/',
    },
  );
  const armLayer = await layout.layer({ arch: 'arm64\n', 'bin/hello': 'not really a program' });
  arm64 = await layout.image([armLayer], { os: 'linux', architecture: 'arm64', variant: 'v8' });
  const index = await layout.index([amd64, arm64]);
  layout.tag('v1', {
    digest: amd64.manifestDigest,
    size: amd64.manifestSize,
    mediaType: OCI_MANIFEST,
  });
  layout.tag('multi', { ...index, mediaType: OCI_INDEX });
  await layout.writeIndex();
}

async function pushAll(reg: TestRegistry): Promise<void> {
  await reg.push(layout.dir, 'v1', 'test/img:v1');
  await reg.push(layout.dir, 'multi', 'test/img:multi', { all: true });
  await reg.push(layout.dir, 'v1', 'test/docker:v1', { format: 'v2s2' });
  await reg.push(layout.dir, 'multi', 'test/docker:multi', { all: true, format: 'v2s2' });
}

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

// Fetches config and layers in parallel and checks each layer's uncompressed tar against
// what was built (so every whiteout, opaque marker and hard link arrived as made).
async function fetchAndCheck(
  client: RegistryClient,
  r: ResolvedImage,
  built: BuiltImage,
  dest: string,
): Promise<string[]> {
  await mkdir(dest, { recursive: true });
  const files = r.layers.map((l) => join(dest, l.digest.replace('sha256:', '')));
  await Promise.all(r.layers.map((l, i) => client.fetchBlob(r.reference, l, files[i] ?? '')));
  assert.deepEqual(
    r.config.rootfs.diff_ids,
    built.layers.map((l: BuiltLayer) => l.diffId),
  );
  r.layers.forEach((l, i) => {
    const blob = readFileSync(files[i] ?? '');
    assert.equal(sha256(blob), l.digest, 'blob verified on disk');
    const tar = l.mediaType?.endsWith('gzip') ? gunzipSync(blob) : blob;
    assert.equal(
      sha256(tar),
      built.layers[i]?.diffId,
      `layer ${i} unpacks to the tar that was built`,
    );
  });
  return files;
}

before(async () => {
  work = await mkdtemp('/tmp/bt-regint-');
  await buildImages();
});

after(async () => {
  await layout.remove();
  await rm(work, { recursive: true, force: true });
});

describe('docker-registry without auth', () => {
  let reg: TestRegistry;
  let client: RegistryClient;
  const ref = (s: string): Reference => parseReference(`${reg.host}/${s}`);

  before(async () => {
    reg = await TestRegistry.start();
    await pushAll(reg);
    client = new RegistryClient();
  });
  after(async () => {
    client.close();
    await reg.stop();
    assert.equal(existsSync(reg.dir), false, 'the registry left no files');
  });

  it('resolves an OCI image by tag, then by digest and by tag@digest', async () => {
    const byTag = await client.resolve(ref('test/img:v1'));
    assert.equal(byTag.manifestMediaType, OCI_MANIFEST);
    assert.equal(byTag.index, undefined);
    assert.equal(byTag.layers.length, 3);
    assert.equal(byTag.configDigest, amd64.configDigest);
    assert.deepEqual(byTag.config.config?.Cmd, ['/bin/sh']);
    assert.deepEqual(byTag.platform, { os: 'linux', architecture: 'amd64' });
    assert.equal(byTag.manifestDigest, sha256(byTag.manifestBytes));
    const byDigest = await client.resolve(ref(`test/img@${byTag.manifestDigest}`));
    assert.equal(byDigest.manifestDigest, byTag.manifestDigest);
    assert.deepEqual(byDigest.manifestBytes, byTag.manifestBytes);
    const both = await client.resolve(ref(`test/img:whatever@${byTag.manifestDigest}`));
    assert.equal(both.manifestDigest, byTag.manifestDigest);
  });

  it('resolves a Docker schema 2 image', async () => {
    const r = await client.resolve(ref('test/docker:v1'));
    assert.equal(r.manifestMediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    assert.equal(r.manifest.config.mediaType, 'application/vnd.docker.container.image.v1+json');
    assert.ok(
      r.layers.every((l) => l.mediaType === 'application/vnd.docker.image.rootfs.diff.tar.gzip'),
    );
  });

  for (const [repo, listType] of [
    ['test/img', OCI_INDEX],
    ['test/docker', 'application/vnd.docker.distribution.manifest.list.v2+json'],
  ] as const) {
    it(`selects the platform from ${repo}:multi (${listType.split('.').slice(-2).join('.')})`, async () => {
      const host = await client.resolve(ref(`${repo}:multi`));
      assert.equal(host.index?.mediaType, listType);
      assert.equal(host.digest, host.index?.digest);
      assert.equal(host.digest, sha256(host.index?.bytes ?? Buffer.alloc(0)));
      assert.deepEqual(host.platform, { os: 'linux', architecture: 'amd64' });
      assert.equal(host.layers.length, 3);
      const arm = await client.resolve(ref(`${repo}:multi`), 'linux/arm64');
      assert.deepEqual(arm.platform, { os: 'linux', architecture: 'arm64' });
      assert.equal(arm.layers.length, 1);
      assert.deepEqual(arm.config.rootfs.diff_ids, [arm64.layers[0]?.diffId]);
      const armV8 = await client.resolve(ref(`${repo}@${host.digest}`), 'linux/aarch64/v8');
      assert.equal(armV8.manifestDigest, arm.manifestDigest);
      await assert.rejects(
        client.resolve(ref(`${repo}:multi`), 'linux/s390x'),
        isCode(
          'MANIFEST_UNKNOWN',
          /No manifest for linux\/s390x .*\(it has linux\/amd64, linux\/arm64\)/,
        ),
      );
    });
  }

  it('fetches all blobs in parallel and they hold the layers as built', async () => {
    const r = await client.resolve(ref('test/img:multi'));
    const files = await fetchAndCheck(client, r, amd64, join(work, 'plain-amd64'));
    const base = gunzipSync(readFileSync(files[0] ?? ''));
    const changes = gunzipSync(readFileSync(files[1] ?? ''));
    const baseFile = join(work, 'base.tar');
    const changesFile = join(work, 'changes.tar');
    await writeFile(baseFile, base);
    await writeFile(changesFile, changes);
    const baseList = (await execFile(['tar', '-tvf', baseFile])).stdout;
    const changesList = (await execFile(['tar', '-tvf', changesFile])).stdout;
    assert.match(baseList, /a\/hard link to a\/file1/);
    assert.match(baseList, /bin\/sh -> busybox/);
    assert.match(changesList, /\.wh\.remove-me/);
    assert.match(changesList, /dir\/\.wh\.\.wh\.\.opq/);
    const arm = await client.resolve(ref('test/docker:multi'), 'linux/arm64');
    await fetchAndCheck(client, arm, arm64, join(work, 'plain-arm64'));
  });

  it('refuses a corrupted blob and keeps nothing of it', async () => {
    const corrupt = await OciLayoutBuilder.create();
    try {
      const layer = await corrupt.layer({ 'unique/file': randomBytes(200_000) });
      const img = await corrupt.image([layer], { os: 'linux', architecture: 'amd64' });
      corrupt.tag('v1', {
        digest: img.manifestDigest,
        size: img.manifestSize,
        mediaType: OCI_MANIFEST,
      });
      await corrupt.writeIndex();
      await reg.push(corrupt.dir, 'v1', 'test/corrupt:v1');
      const r = await client.resolve(ref('test/corrupt:v1'));
      const l = r.layers[0];
      assert.ok(l);
      // Same length, one byte different: only the digest can tell.
      const fh = await open(reg.blobDataPath(l.digest), 'r+');
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, 1000);
      b[0] = (b[0] ?? 0) ^ 0xff;
      await fh.write(b, 0, 1, 1000);
      await fh.close();
      const dest = join(work, 'corrupt-blob');
      await assert.rejects(
        client.fetchBlob(r.reference, l, dest),
        isCode('IMAGE_INVALID', /digest mismatch/),
      );
      assert.equal(existsSync(dest), false);
    } finally {
      await corrupt.remove();
    }
  });

  it('resumes a layer when the connection is cut mid-blob', async () => {
    const proxy = await CuttingProxy.start(reg.port, 1_500_000, 2);
    const viaProxy = new RegistryClient({ retryDelayMs: 50 });
    try {
      const r = await viaProxy.resolve(parseReference(`127.0.0.1:${proxy.port}/test/img:v1`));
      const big = r.layers[0];
      assert.ok(big && big.size > 3_000_000, 'the first layer is the big one');
      const dest = join(work, 'resumed-blob');
      let last = 0;
      await viaProxy.fetchBlob(r.reference, big, dest, { onProgress: (n) => (last = n) });
      assert.equal(sha256(readFileSync(dest)), big.digest);
      assert.equal(last, big.size);
      assert.equal(proxy.cuts, 2, 'two connections were cut');
      assert.equal(proxy.ranges.length, 2, `resumed twice: ${proxy.ranges.join(', ')}`);
      assert.ok(proxy.ranges.every((x) => /^bytes=[1-9]\d*-$/.test(x)));
      // And from a part left on disk by an earlier run.
      const partial = join(work, 'partial-blob');
      await copyFile(dest, partial);
      const fh = await open(partial, 'r+');
      await fh.truncate(big.size - 100_000);
      await fh.close();
      proxy.ranges.length = 0;
      await viaProxy.fetchBlob(r.reference, big, partial);
      assert.equal(sha256(readFileSync(partial)), big.digest);
      assert.deepEqual(proxy.ranges, [`bytes=${big.size - 100_000}-`]);
    } finally {
      viaProxy.close();
      await proxy.stop();
    }
  });

  it('says MANIFEST_UNKNOWN for a tag and a blob that are not there', async () => {
    await assert.rejects(
      client.resolve(ref('test/img:nope')),
      isCode('MANIFEST_UNKNOWN', /test\/img:nope not found/),
    );
    await assert.rejects(
      client.fetchBlob(
        ref('test/img:v1'),
        { digest: sha256(Buffer.from('absent')), size: 6 },
        join(work, 'absent'),
      ),
      isCode('MANIFEST_UNKNOWN', /not found/),
    );
  });
});

describe('docker-registry with htpasswd basic auth', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await TestRegistry.start({ htpasswd: [ALICE] });
    await pushAll(reg);
  });
  after(() => reg.stop());

  it('asks for a login, refuses wrong credentials, pulls with the saved ones', async () => {
    const anonymous = new RegistryClient();
    const root = join(work, 'basic-root');
    await mkdir(root);
    const store = new CredentialStore(root);
    const client = new RegistryClient({ credentials: store.lookup() });
    try {
      await assert.rejects(
        anonymous.resolve(`${reg.host}/test/img:v1`),
        isCode('REGISTRY_AUTH_FAILED', new RegExp(`berth login ${reg.host}`)),
      );
      await assert.rejects(
        store.login(reg.host, 'alice', 'wrong', client),
        isCode(
          'REGISTRY_AUTH_FAILED',
          /Login to .* failed: the registry refused the username or password of "alice"/,
        ),
      );
      await assert.rejects(
        store.login(reg.host, 'mallory', ALICE.password, client),
        isCode('REGISTRY_AUTH_FAILED'),
      );
      assert.equal(existsSync(store.file), false);
      await store.login(reg.host, ALICE.username, ALICE.password, client);
      assert.equal(statSync(store.file).mode & 0o777, 0o600);
      const r = await client.resolve(`${reg.host}/test/img:multi`);
      await fetchAndCheck(client, r, amd64, join(work, 'basic-amd64'));
      await store.logout(reg.host, client);
      await assert.rejects(
        client.resolve(`${reg.host}/test/docker:v1`),
        isCode('REGISTRY_AUTH_FAILED'),
      );
    } finally {
      anonymous.close();
      client.close();
    }
  });
});

describe('docker-registry with token auth', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await TestRegistry.start({ token: { users: [ALICE] } });
    await pushAll(reg);
  });
  after(() => reg.stop());

  it('gets a token per scope from the token server, with and without a login', async () => {
    const ts = reg.tokenServer;
    assert.ok(ts);
    const anonymous = new RegistryClient();
    const root = join(work, 'token-root');
    await mkdir(root);
    const store = new CredentialStore(root);
    const client = new RegistryClient({ credentials: store.lookup() });
    try {
      // The token server gives an anonymous client a token with no access.
      await assert.rejects(
        anonymous.resolve(`${reg.host}/test/img:v1`),
        isCode('REGISTRY_AUTH_FAILED', /Pull access denied for 127\.0\.0\.1:\d+\/test\/img/),
      );
      await assert.rejects(
        store.login(reg.host, 'alice', 'wrong', client),
        isCode(
          'REGISTRY_AUTH_FAILED',
          /the token server refused the username or password of "alice"/,
        ),
      );
      assert.equal(existsSync(store.file), false);
      await store.login(reg.host, ALICE.username, ALICE.password, client);
      const before = ts.requests;
      const r = await client.resolve(`${reg.host}/test/img:multi`);
      await fetchAndCheck(client, r, amd64, join(work, 'token-amd64'));
      assert.equal(
        ts.requests - before,
        1,
        'one token for the repository, shared by every request',
      );
      const d = await client.resolve(`${reg.host}/test/docker:multi`, 'linux/arm64');
      await fetchAndCheck(client, d, arm64, join(work, 'token-arm64'));
      assert.equal(ts.requests - before, 2, 'another repository, another scope, another token');
    } finally {
      anonymous.close();
      client.close();
    }
  });
});

describe('docker-registry over TLS with a test CA', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await TestRegistry.start({ tls: true });
    await reg.push(layout.dir, 'v1', 'test/img:v1');
  });
  after(() => reg.stop());

  it('verifies the certificate with the CA from certs.d, and refuses without it', async () => {
    const certsDir = join(work, 'certs.d');
    await mkdir(join(certsDir, reg.host), { recursive: true });
    await copyFile(reg.caFile ?? '', join(certsDir, reg.host, 'ca.crt'));
    const verified = new RegistryClient({ loopbackInsecure: false, certsDir });
    const unverified = new RegistryClient({ loopbackInsecure: false });
    const insecure = new RegistryClient();
    try {
      const r = await verified.resolve(`${reg.host}/test/img:v1`);
      await fetchAndCheck(verified, r, amd64, join(work, 'tls-amd64'));
      await assert.rejects(
        unverified.resolve(`${reg.host}/test/img:v1`),
        isCode('REGISTRY_UNAVAILABLE', /certificate/i),
      );
      // Loopback is insecure by default: HTTPS without verification, as docker does.
      assert.equal(
        (await insecure.resolve(`${reg.host}/test/img:v1`)).manifestDigest,
        r.manifestDigest,
      );
    } finally {
      verified.close();
      unverified.close();
      insecure.close();
    }
  });
});

// A TCP proxy that cuts the first `times` connections once each has carried `after`
// bytes towards the client, and notes the Range headers it sees.
class CuttingProxy {
  port = 0;
  readonly ranges: string[] = [];
  cuts = 0;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  private constructor(target: number, after: number, times: number) {
    this.server = createServer((client) => {
      const upstream = connect(target, '127.0.0.1');
      this.sockets.add(client).add(upstream);
      let down = 0;
      const cutThis = this.cuts < times;
      client.on('data', (b: Buffer) => {
        for (const m of b.toString('latin1').matchAll(/^range: (\S+)\r$/gim)) {
          this.ranges.push(m[1] ?? '');
        }
        upstream.write(b);
      });
      upstream.on('data', (b: Buffer) => {
        down += b.length;
        if (cutThis && down > after && this.cuts < times) {
          this.cuts++;
          client.destroy();
          upstream.destroy();
          return;
        }
        client.write(b);
      });
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
    });
  }

  static async start(target: number, after: number, times: number): Promise<CuttingProxy> {
    const p = new CuttingProxy(target, after, times);
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    const addr = p.server.address();
    p.port = typeof addr === 'object' && addr ? addr.port : 0;
    return p;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
