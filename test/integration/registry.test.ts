// The registry client against Debian's real docker-registry, images built here (real tar
// layers: a whiteout, an opaque directory, a hard link, a symlink; an index of amd64 and
// arm64) and pushed with skopeo, as OCI and as Docker schema 2; and the same images pushed
// by the client itself and pulled back. No berthd: this is the library the engine's pull
// and push are built on.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rm, writeFile, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { CredentialStore } from '../../src/images/credentials.ts';
import { parseReference, type Reference } from '../../src/images/reference.ts';
import {
  RegistryClient,
  type PushBlobOptions,
  type PushBlobResult,
  type ResolvedImage,
} from '../../src/images/registry.ts';
import { BerthError } from '../../src/util/errors.ts';
import { execFile } from '../../src/util/exec.ts';
import {
  CuttingProxy,
  OciLayoutBuilder,
  TestRegistry,
  type BuiltImage,
  type BuiltLayer,
  type RegistryUser,
} from '../helpers/registry.ts';

const ALICE: RegistryUser = { username: 'alice', password: 'correct horse' };
// For the token server: may pull, not push.
const BOB: RegistryUser = { username: 'bob', password: 'battery staple', actions: ['pull'] };
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

let work = '';
let layout: OciLayoutBuilder;
let amd64: BuiltImage;
let arm64: BuiltImage;
let multiIndex: { digest: string; size: number };

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
  multiIndex = index;
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

// --- push --------------------------------------------------------------------------

function layoutFile(digest: string): string {
  return join(layout.dir, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));
}

function layoutBlob(digest: string): { digest: string; size: number } {
  return { digest, size: statSync(layoutFile(digest)).size };
}

function openLayout(digest: string): (offset: number) => Readable {
  return (offset) => createReadStream(layoutFile(digest), { start: offset });
}

// Pushes an image as a client of berth's would: config and layers in parallel, then the
// manifest under `tag` (a tag, or its digest).
async function pushImage(
  client: RegistryClient,
  ref: Reference,
  img: BuiltImage,
  tag: string,
  opts: PushBlobOptions = {},
): Promise<PushBlobResult[]> {
  const digests = [img.configDigest, ...img.layers.map((l) => l.digest)];
  const results = await Promise.all(
    digests.map((d) => client.pushBlob(ref, layoutBlob(d), openLayout(d), opts)),
  );
  const pushed = await client.pushManifest(
    ref,
    tag,
    readFileSync(layoutFile(img.manifestDigest)),
    OCI_MANIFEST,
  );
  assert.equal(pushed, img.manifestDigest, 'pushManifest returns the digest of the bytes');
  return results;
}

// Pulls what was pushed back through resolve and fetchBlob, and checks it is byte for
// byte what the layout holds.
async function pullAndCompare(
  client: RegistryClient,
  ref: string,
  img: BuiltImage,
  dest: string,
  platform?: string,
): Promise<ResolvedImage> {
  const r = await client.resolve(ref, platform);
  assert.equal(r.manifestDigest, img.manifestDigest);
  assert.ok(r.manifestBytes.equals(readFileSync(layoutFile(img.manifestDigest))), 'manifest');
  assert.ok(r.configBytes.equals(readFileSync(layoutFile(img.configDigest))), 'config');
  const files = await fetchAndCheck(client, r, img, dest);
  files.forEach((f, i) => {
    const want = readFileSync(layoutFile(img.layers[i]?.digest ?? ''));
    assert.ok(readFileSync(f).equals(want), `layer ${i} pulled back as pushed`);
  });
  return r;
}

// The upload sessions docker-registry keeps open for a repository. A cancelled one (a
// DELETE) loses its data and startedat files but, in 2.8, keeps a directory with its
// hashstates: only the first two make a session.
async function uploadSessions(reg: TestRegistry, repository: string): Promise<string[]> {
  const dir = join(reg.storage, 'docker/registry/v2/repositories', repository, '_uploads');
  const ids = await readdir(dir).catch(() => []);
  const open = await Promise.all(
    ids.map(async (id) => {
      const files = await readdir(join(dir, id));
      return files.includes('data') || files.includes('startedat');
    }),
  );
  return ids.filter((_, i) => open[i]);
}

// The sessions a failed push cancels without waiting: give the DELETEs a moment. (Only
// those that took no bytes: docker-registry refuses to cancel one a PUT wrote part of.)
async function noSessionsLeft(reg: TestRegistry, repository: string): Promise<void> {
  for (let i = 0; i < 100 && (await uploadSessions(reg, repository)).length > 0; i++) {
    await sleep(50);
  }
  assert.deepEqual(await uploadSessions(reg, repository), [], 'no upload session left');
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
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

describe('pushing to docker-registry without auth', () => {
  let reg: TestRegistry;
  let client: RegistryClient;
  const ref = (s: string): Reference => parseReference(`${reg.host}/${s}`);

  before(async () => {
    reg = await TestRegistry.start();
    client = new RegistryClient();
  });
  after(async () => {
    client.close();
    await reg.stop();
    assert.equal(existsSync(reg.dir), false, 'the registry left no files');
  });

  it('pushes an image blob by blob and its manifest, and pulls back the same bytes', async () => {
    const r = ref('push/one:v1');
    const big = amd64.layers[0];
    assert.ok(big && big.size > 3_000_000, 'the first layer is the big one');
    for (const l of amd64.layers) assert.equal(await client.blobExists(r, l), false);
    const progress: number[] = [];
    assert.equal(
      await client.pushBlob(r, big, openLayout(big.digest), {
        onProgress: (n, total) => {
          assert.equal(total, big.size);
          progress.push(n);
        },
      }),
      'pushed',
    );
    assert.equal(progress.at(-1), big.size);
    assert.ok(progress.length > 10, `streamed in chunks: ${progress.length} progress reports`);
    assert.deepEqual(
      progress,
      [...progress].sort((a, b) => a - b),
      'progress only grows',
    );
    // The big layer is there now; the rest is uploaded.
    assert.deepEqual(await pushImage(client, r, amd64, 'v1'), [
      'pushed',
      'exists',
      'pushed',
      'pushed',
    ]);
    for (const l of amd64.layers) assert.equal(await client.blobExists(r, l), true);
    await pullAndCompare(client, `${reg.host}/push/one:v1`, amd64, join(work, 'push-one'));
    await noSessionsLeft(reg, 'push/one');

    // A second push finds every blob there and sends no layer again.
    const again: number[] = [];
    const results = await pushImage(client, r, amd64, 'v1', {
      onProgress: (n) => again.push(n),
    });
    assert.deepEqual(results, ['exists', 'exists', 'exists', 'exists']);
    assert.equal(again.length, 4, 'one progress report per blob, at its size');
  });

  it('mounts blobs from another repository, and uploads what that one lacks', async () => {
    const source = ref('push/source:v1');
    assert.deepEqual(await pushImage(client, source, arm64, 'v1'), ['pushed', 'pushed']);
    const target = ref('push/mounted:v1');
    assert.deepEqual(await pushImage(client, target, arm64, 'arm', { mountFrom: 'push/source' }), [
      'mounted',
      'mounted',
    ]);
    await pullAndCompare(
      client,
      `${reg.host}/push/mounted:arm`,
      arm64,
      join(work, 'push-mounted-arm64'),
      'linux/arm64',
    );
    // push/source has none of these: the registry opens an upload instead (202).
    assert.deepEqual(await pushImage(client, target, amd64, 'amd', { mountFrom: 'push/source' }), [
      'pushed',
      'pushed',
      'pushed',
      'pushed',
    ]);
    await pullAndCompare(client, `${reg.host}/push/mounted:amd`, amd64, join(work, 'push-mounted'));
    await noSessionsLeft(reg, 'push/mounted');
  });

  it('pushes a multi-platform index: manifests by digest, the index by tag', async () => {
    const r = ref('push/multi');
    for (const img of [amd64, arm64]) {
      const d = img.manifestDigest;
      await pushImage(client, r, img, d);
    }
    const bytes = readFileSync(layoutFile(multiIndex.digest));
    assert.equal(await client.pushManifest(r, 'multi', bytes, OCI_INDEX), multiIndex.digest);
    const host = await pullAndCompare(
      client,
      `${reg.host}/push/multi:multi`,
      amd64,
      join(work, 'push-multi-amd64'),
      'linux/amd64',
    );
    assert.equal(host.digest, multiIndex.digest);
    assert.ok(host.index?.bytes.equals(bytes), 'the index as pushed');
    const arm = await pullAndCompare(
      client,
      `${reg.host}/push/multi:multi`,
      arm64,
      join(work, 'push-multi-arm64'),
      'linux/arm64',
    );
    assert.equal(arm.digest, multiIndex.digest);
  });

  it('refuses content unlike its descriptor and a manifest whose blobs are missing', async () => {
    const r = ref('push/bad');
    const layer = amd64.layers[2];
    assert.ok(layer);
    const desc = layoutBlob(layer.digest);
    const content = readFileSync(layoutFile(layer.digest));
    assert.ok(desc.size > 100_000);
    const other = Buffer.from(content);
    other[desc.size - 1] = (other[desc.size - 1] ?? 0) ^ 0xff;
    // In pieces, so that all but the last reach the registry before the digest is known.
    const pieces = (b: Buffer) => () =>
      Readable.from([b.subarray(0, 50_000), b.subarray(50_000, 99_000), b.subarray(99_000)]);
    await assert.rejects(
      client.pushBlob(r, desc, pieces(other)),
      isCode('IMAGE_INVALID', /does not match its digest/),
    );
    await assert.rejects(
      client.pushBlob(r, desc, pieces(content.subarray(0, 99_000))),
      isCode('IMAGE_INVALID', new RegExp(`ended after 99000 of ${desc.size} bytes`)),
    );
    // The right bytes with more behind them: still refused, and the registry never gets the
    // last of the right ones, so it does not take the blob either.
    await assert.rejects(
      client.pushBlob(r, desc, pieces(Buffer.concat([content, Buffer.from('x')]))),
      isCode('IMAGE_INVALID', /longer than/),
    );
    assert.equal(await client.blobExists(r, desc), false, 'nothing of it was taken');

    // A source that fails is that failure, not the registry's; its session is cancelled.
    const unreadable = ref('push/unreadable');
    await assert.rejects(
      client.pushBlob(unreadable, desc, () => createReadStream(join(work, 'no-such-file'))),
      (e: unknown) => (e as { code?: string }).code === 'ENOENT',
    );
    await noSessionsLeft(reg, 'push/unreadable');

    const manifest = readFileSync(layoutFile(amd64.manifestDigest));
    await assert.rejects(
      client.pushManifest(r, 'v1', manifest, OCI_MANIFEST),
      isCode('IMAGE_INVALID', /refused manifest .*push\/bad:v1: MANIFEST_BLOB_UNKNOWN/),
    );
    await assert.rejects(
      client.pushManifest(r, arm64.manifestDigest, manifest, OCI_MANIFEST),
      isCode('IMAGE_INVALID', new RegExp(`has digest ${amd64.manifestDigest}`)),
    );
    await assert.rejects(
      client.pushManifest(r, 'no/tag', manifest, OCI_MANIFEST),
      isCode('INVALID_ARGUMENT'),
    );
    await assert.rejects(client.resolve(`${reg.host}/push/bad:v1`), isCode('MANIFEST_UNKNOWN'));
  });

  it('stops an upload on abort', async () => {
    const r = ref('push/aborted');
    const big = amd64.layers[0];
    assert.ok(big);
    const ac = new AbortController();
    let last = 0;
    await assert.rejects(
      client.pushBlob(r, big, openLayout(big.digest), {
        signal: ac.signal,
        onProgress: (n) => {
          last = n;
          if (n > 1 << 20) ac.abort();
        },
      }),
      { name: 'AbortError' },
    );
    assert.ok(last < big.size, `stopped at ${last} of ${big.size}`);
    assert.equal(await client.blobExists(r, big), false);
  });

  it('starts the upload over in a new session when the connection is cut mid-blob', async () => {
    const proxy = await CuttingProxy.start(reg.port, 1_500_000, 2, 'up');
    const viaProxy = new RegistryClient({ retryDelayMs: 50 });
    try {
      const r = parseReference(`127.0.0.1:${proxy.port}/push/cut`);
      const big = amd64.layers[0];
      assert.ok(big);
      const starts: number[] = [];
      let last = 0;
      const result = await viaProxy.pushBlob(r, big, openLayout(big.digest), {
        onProgress: (n) => {
          if (n === 0) starts.push(n);
          last = n;
        },
      });
      assert.equal(result, 'pushed');
      assert.equal(proxy.cuts, 2, 'two connections were cut');
      const posts = proxy.requests.filter((x) => x.startsWith('POST /v2/push/cut/blobs/uploads/'));
      const puts = proxy.requests.filter((x) => x.startsWith('PUT /v2/push/cut/blobs/uploads/'));
      assert.equal(posts.length, 3, `a session per attempt: ${proxy.requests.join(', ')}`);
      assert.equal(puts.length, 3);
      assert.equal(new Set(puts.map((x) => x.split('?')[0])).size, 3, 'three sessions');
      assert.ok(puts.every((x) => x.includes(`digest=${encodeURIComponent(big.digest)}`)));
      assert.ok(
        puts.every((x) => /[?&]_state=/.test(x)),
        'the _state of the Location is kept',
      );
      assert.equal(starts.length, 3, 'progress starts from 0 on each attempt');
      assert.equal(last, big.size);
      const dest = join(work, 'push-cut-blob');
      await client.fetchBlob(ref('push/cut'), big, dest);
      assert.ok(readFileSync(dest).equals(readFileSync(layoutFile(big.digest))));
    } finally {
      viaProxy.close();
      await proxy.stop();
    }
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

  it('pushes with the right credentials, and refuses wrong ones or none, naming the repository', async () => {
    const anonymous = new RegistryClient();
    const wrong = new RegistryClient({
      credentials: () => ({ username: ALICE.username, password: 'wrong' }),
    });
    const client = new RegistryClient({ credentials: () => ALICE });
    const r = parseReference(`${reg.host}/push/basic`);
    const repo = escapeRe(`${reg.host}/push/basic`);
    const host = escapeRe(reg.host);
    const config = layoutBlob(amd64.configDigest);
    const manifest = readFileSync(layoutFile(amd64.manifestDigest));
    try {
      await assert.rejects(
        anonymous.pushBlob(r, config, openLayout(config.digest)),
        isCode('REGISTRY_AUTH_FAILED', new RegExp(`${repo}.*berth login ${host}`)),
      );
      await assert.rejects(
        wrong.pushBlob(r, config, openLayout(config.digest)),
        isCode(
          'REGISTRY_AUTH_FAILED',
          new RegExp(`Registry ${host} denied "alice" push access to ${repo} \\(wrong credentials`),
        ),
      );
      await assert.rejects(
        wrong.pushManifest(r, 'v1', manifest, OCI_MANIFEST),
        isCode('REGISTRY_AUTH_FAILED', new RegExp(`push access to ${repo}`)),
      );
      assert.deepEqual(await pushImage(client, r, amd64, 'v1'), [
        'pushed',
        'pushed',
        'pushed',
        'pushed',
      ]);
      await pullAndCompare(client, `${reg.host}/push/basic:v1`, amd64, join(work, 'push-basic'));
      // Mounting needs nothing more from basic auth than the push itself.
      const mounted = parseReference(`${reg.host}/push/basic-mounted`);
      assert.deepEqual(await pushImage(client, mounted, amd64, 'v1', { mountFrom: 'push/basic' }), [
        'mounted',
        'mounted',
        'mounted',
        'mounted',
      ]);
    } finally {
      anonymous.close();
      wrong.close();
      client.close();
    }
  });
});

describe('docker-registry with token auth', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await TestRegistry.start({ token: { users: [ALICE, BOB] } });
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

  it('pushes with a pull,push token, mounts with one token for both repositories, refuses an account that may only pull', async () => {
    const ts = reg.tokenServer;
    assert.ok(ts);
    const alice = new RegistryClient({ credentials: () => ALICE });
    const bob = new RegistryClient({ credentials: () => BOB });
    const wrong = new RegistryClient({
      credentials: () => ({ username: ALICE.username, password: 'wrong' }),
    });
    const anonymous = new RegistryClient();
    const host = escapeRe(reg.host);
    const layer = arm64.layers[0];
    assert.ok(layer);
    const desc = layoutBlob(layer.digest);
    try {
      const r = parseReference(`${reg.host}/push/tok`);
      let from = ts.scopes.length;
      assert.deepEqual(await pushImage(alice, r, amd64, 'v1'), [
        'pushed',
        'pushed',
        'pushed',
        'pushed',
      ]);
      assert.deepEqual(
        ts.scopes.slice(from),
        [['repository:push/tok:pull,push']],
        'one token for every HEAD, POST and PUT of the push',
      );
      await pullAndCompare(alice, `${reg.host}/push/tok:v1`, amd64, join(work, 'push-tok'));

      from = ts.scopes.length;
      const mounted = parseReference(`${reg.host}/push/tok-mounted`);
      assert.deepEqual(await pushImage(alice, mounted, amd64, 'v1', { mountFrom: 'push/tok' }), [
        'mounted',
        'mounted',
        'mounted',
        'mounted',
      ]);
      assert.deepEqual(ts.scopes.slice(from), [
        ['repository:push/tok-mounted:pull,push'],
        ['repository:push/tok-mounted:pull,push', 'repository:push/tok:pull'],
      ]);
      await pullAndCompare(
        alice,
        `${reg.host}/push/tok-mounted:v1`,
        amd64,
        join(work, 'push-tok-mounted'),
      );

      // Bob may pull what alice pushed, and push nothing.
      await pullAndCompare(bob, `${reg.host}/push/tok:v1`, amd64, join(work, 'push-tok-bob'));
      const denied = parseReference(`${reg.host}/push/tok-denied`);
      const repo = escapeRe(`${reg.host}/push/tok-denied`);
      await assert.rejects(
        bob.pushBlob(denied, desc, openLayout(desc.digest)),
        isCode(
          'REGISTRY_AUTH_FAILED',
          new RegExp(
            `Registry ${host} denied "bob" push access to ${repo} \\(the account may not push there\\)`,
          ),
        ),
      );
      await assert.rejects(
        bob.pushManifest(
          denied,
          'v1',
          readFileSync(layoutFile(arm64.manifestDigest)),
          OCI_MANIFEST,
        ),
        isCode('REGISTRY_AUTH_FAILED', new RegExp(`"bob" push access to ${repo}`)),
      );
      await assert.rejects(
        wrong.pushBlob(denied, desc, openLayout(desc.digest)),
        isCode(
          'REGISTRY_AUTH_FAILED',
          new RegExp(
            `Cannot push to ${repo}: .*token server refused the username or password of "alice"`,
          ),
        ),
      );
      await assert.rejects(
        anonymous.pushBlob(denied, desc, openLayout(desc.digest)),
        isCode(
          'REGISTRY_AUTH_FAILED',
          new RegExp(`Push access denied for ${repo}: .*berth login ${host}`),
        ),
      );
      assert.equal(await alice.blobExists(denied, desc), false, 'no refused push left the blob');
      assert.deepEqual(await uploadSessions(reg, 'push/tok-denied'), []);
    } finally {
      alice.close();
      bob.close();
      wrong.close();
      anonymous.close();
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
