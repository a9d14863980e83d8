import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { ContentStore } from '../../src/images/content-store.ts';
import {
  readImageArchive,
  writeImageArchive,
  type ArchiveImage,
  type SaveImage,
} from '../../src/images/archive.ts';
import { hostPlatform } from '../../src/images/platform.ts';
import { type BerthError, isBerthError } from '../../src/util/errors.ts';
import { execFile } from '../../src/util/exec.ts';
import { tarball, type Entry } from '../fixtures/layers/tar-writer.ts';
import { OciLayoutBuilder, type BuiltImage } from '../helpers/registry.ts';

const sha = (b: Buffer | string): string =>
  `sha256:${createHash('sha256').update(b).digest('hex')}`;
const hex = (digest: string): string => digest.slice('sha256:'.length);

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const DOCKER_TAR = 'application/vnd.docker.image.rootfs.diff.tar';

let base: string;
let layout: OciLayoutBuilder;
let n = 0;
// Two images sharing their bottom layer; `beta` has an uncompressed layer too.
let alpha: BuiltImage;
let beta: BuiltImage;
// One image for this host and one for another platform, behind an index.
let multiHost: BuiltImage;
let multiOther: BuiltImage;

const host = hostPlatform();
const other =
  host.architecture === 's390x'
    ? { os: 'linux', architecture: 'ppc64le' }
    : { os: 'linux', architecture: 's390x' };

async function skopeo(...args: string[]): Promise<void> {
  await execFile(['skopeo', '--insecure-policy', 'copy', '--quiet', ...args], {
    timeoutMs: 120_000,
  });
}

function fresh(name: string): string {
  return join(base, `${name}-${n++}`);
}

async function newStore(): Promise<ContentStore> {
  const s = new ContentStore(fresh('store'));
  await s.init();
  return s;
}

// What the store holds, blobs and leftovers of writes alike.
async function snapshot(store: ContentStore): Promise<string[]> {
  const tmp = await readdir(join(store.dir, 'tmp'));
  return [...(await store.list()).sort(), ...tmp.map((t) => `tmp/${t}`)];
}

async function blobOf(digest: string): Promise<Buffer> {
  return readFile(join(layout.dir, 'blobs', 'sha256', hex(digest)));
}

// Puts an image built in the layout into a store, as a pull would have.
async function importImage(store: ContentStore, image: BuiltImage): Promise<void> {
  for (const d of [
    image.manifestDigest,
    image.configDigest,
    ...image.layers.map((l) => l.digest),
  ]) {
    await store.putBytes(await blobOf(d), d);
  }
}

function saveImage(image: BuiltImage, repoTags: string[]): SaveImage {
  return {
    configDigest: image.configDigest,
    manifestDigest: image.manifestDigest,
    manifestMediaType: OCI_MANIFEST,
    layers: image.layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType })),
    repoTags,
  };
}

async function writeTo(file: string, store: ContentStore, images: SaveImage[]): Promise<void> {
  await writeImageArchive(createWriteStream(file), store, images);
}

async function readFrom(file: string, store: ContentStore): Promise<ArchiveImage[]> {
  return readImageArchive(createReadStream(file, { highWaterMark: 16 * 1024 }), store);
}

// Feeds bytes in small chunks, so headers and bodies straddle reads.
function chunks(b: Buffer, size = 7001): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < b.length; i += size) parts.push(b.subarray(i, i + size));
  return Readable.from(parts);
}

function layersOf(image: BuiltImage): { digest: string; size: number; mediaType: string }[] {
  return image.layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType }));
}

async function listTar(file: string): Promise<string[]> {
  return (await execFile(['tar', '-tf', file])).stdout.split('\n').filter((l) => l !== '');
}

// A skopeo-written OCI layout's single image: manifest digest, config digest, layer count.
async function ociDirImage(
  dir: string,
): Promise<{ manifest: string; config: string; layers: number }> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  assert.equal(index.manifests.length, 1);
  const manifest = index.manifests[0]?.digest ?? '';
  const m = JSON.parse(await readFile(join(dir, 'blobs', 'sha256', hex(manifest)), 'utf8')) as {
    config: { digest: string };
    layers: unknown[];
  };
  return { manifest, config: m.config.digest, layers: m.layers.length };
}

before(async () => {
  base = await mkdtemp('/tmp/berth-archive-');
  layout = await OciLayoutBuilder.create();
  const shared = await layout.layer({ 'etc/os-release': 'ID=test\n', 'bin/': 'dir' });
  // Incompressible, so the archive is a few MiB and flow control is exercised.
  const big = await layout.layer({ 'data/big.bin': randomBytes(3 << 20) });
  const plain = await layout.layer({ 'etc/beta': 'beta\n' }, 'none');
  alpha = await layout.image([shared, big], host, { Cmd: ['/bin/alpha'] });
  beta = await layout.image([shared, plain], host, { Cmd: ['/bin/beta'] });
  layout.tag('alpha', {
    digest: alpha.manifestDigest,
    size: alpha.manifestSize,
    mediaType: OCI_MANIFEST,
  });
  layout.tag('beta', {
    digest: beta.manifestDigest,
    size: beta.manifestSize,
    mediaType: OCI_MANIFEST,
  });
  const hostOnly = await layout.layer({ 'etc/arch': 'host\n' });
  const otherOnly = await layout.layer({ 'etc/arch': 'other\n' });
  multiHost = await layout.image([hostOnly], host);
  multiOther = await layout.image([otherOnly], other);
  const idx = await layout.index([multiOther, multiHost]);
  layout.tag('multi', { ...idx, mediaType: OCI_INDEX });
  await layout.writeIndex();
});

after(async () => {
  await layout.remove();
  await rm(base, { recursive: true, force: true });
});

describe('writeImageArchive and readImageArchive', () => {
  it('round-trips images: configs, manifests, layers and tags, each blob once', async () => {
    const src = await newStore();
    await importImage(src, alpha);
    await importImage(src, beta);
    const images = [
      saveImage(alpha, ['docker.io/library/alpha:1', 'alpha:latest']),
      saveImage(beta, ['example.com:5000/team/beta:2']),
    ];
    const file = fresh('rt.tar');
    await writeTo(file, src, images);

    const names = await listTar(file);
    const blobs = names.filter((e) => /^blobs\/sha256\/[0-9a-f]{64}$/.test(e));
    assert.equal(new Set(blobs).size, blobs.length, 'each blob once');
    // 2 manifests + 2 configs + 4 layers (one shared)
    assert.equal(blobs.length, 7);
    for (const m of ['manifest.json', 'index.json', 'oci-layout', 'repositories']) {
      assert.ok(names.includes(m), m);
    }
    const manifestJson = JSON.parse(
      (await execFile(['tar', '-xOf', file, 'manifest.json'])).stdout,
    ) as unknown;
    assert.deepEqual(manifestJson, [
      {
        Config: `blobs/sha256/${hex(alpha.configDigest)}`,
        RepoTags: ['alpha:1', 'alpha:latest'],
        Layers: alpha.layers.map((l) => `blobs/sha256/${hex(l.digest)}`),
      },
      {
        Config: `blobs/sha256/${hex(beta.configDigest)}`,
        RepoTags: ['example.com:5000/team/beta:2'],
        Layers: beta.layers.map((l) => `blobs/sha256/${hex(l.digest)}`),
      },
    ]);
    const index = JSON.parse((await execFile(['tar', '-xOf', file, 'index.json'])).stdout) as {
      manifests: { digest: string; annotations?: Record<string, string> }[];
    };
    assert.deepEqual(
      index.manifests.map((m) => [m.digest, m.annotations]),
      [
        [
          alpha.manifestDigest,
          {
            'io.containerd.image.name': 'docker.io/library/alpha:1',
            'org.opencontainers.image.ref.name': '1',
          },
        ],
        [
          alpha.manifestDigest,
          {
            'io.containerd.image.name': 'docker.io/library/alpha:latest',
            'org.opencontainers.image.ref.name': 'latest',
          },
        ],
        [
          beta.manifestDigest,
          {
            'io.containerd.image.name': 'example.com:5000/team/beta:2',
            'org.opencontainers.image.ref.name': '2',
          },
        ],
      ],
    );
    const repositories = JSON.parse(
      (await execFile(['tar', '-xOf', file, 'repositories'])).stdout,
    ) as unknown;
    assert.deepEqual(repositories, {
      alpha: { '1': hex(alpha.configDigest), latest: hex(alpha.configDigest) },
      'example.com:5000/team/beta': { '2': hex(beta.configDigest) },
    });

    // The same images give the same bytes.
    const again = fresh('rt2.tar');
    await writeTo(again, src, images);
    assert.ok((await readFile(file)).equals(await readFile(again)));

    const dst = await newStore();
    const got = await readFrom(file, dst);
    assert.deepEqual(got, [
      {
        configDigest: alpha.configDigest,
        manifest: { digest: alpha.manifestDigest, mediaType: OCI_MANIFEST },
        layers: layersOf(alpha),
        repoTags: ['alpha:1', 'alpha:latest'],
      },
      {
        configDigest: beta.configDigest,
        manifest: { digest: beta.manifestDigest, mediaType: OCI_MANIFEST },
        layers: layersOf(beta),
        repoTags: ['example.com:5000/team/beta:2'],
      },
    ]);
    // Exactly the blobs the images use, byte for byte.
    assert.deepEqual(await snapshot(dst), await snapshot(src));
    for (const d of await dst.list()) {
      assert.equal(sha(await dst.readBytes(d)), d);
    }
  });

  it('reads its own archive again when the blobs are already stored, adding nothing', async () => {
    const src = await newStore();
    await importImage(src, alpha);
    const file = fresh('again.tar');
    await writeTo(file, src, [saveImage(alpha, ['alpha:1'])]);
    const before = await snapshot(src);
    const got = await readImageArchive(chunks(await readFile(file)), src);
    assert.equal(got.length, 1);
    assert.equal(got[0]?.configDigest, alpha.configDigest);
    assert.deepEqual(await snapshot(src), before);
  });

  it('writes archives skopeo reads as docker-archive: and as oci-archive:', async () => {
    const src = await newStore();
    await importImage(src, alpha);
    await importImage(src, beta);
    const one = fresh('skopeo-one.tar');
    await writeTo(one, src, [saveImage(beta, ['beta:2'])]);

    const viaDocker = fresh('from-docker-archive');
    await skopeo(`docker-archive:${one}`, `oci:${viaDocker}:beta`);
    // skopeo converts docker-archive's schema 2 manifest to OCI, config included: the
    // config is re-encoded, so compare what it says.
    const d = await ociDirImage(viaDocker);
    assert.equal(d.layers, beta.layers.length);
    const converted = JSON.parse(
      await readFile(join(viaDocker, 'blobs', 'sha256', hex(d.config)), 'utf8'),
    ) as { rootfs: { diff_ids: string[] }; config: { Cmd: string[] } };
    assert.deepEqual(
      converted.rootfs.diff_ids,
      beta.layers.map((l) => l.diffId),
    );
    assert.deepEqual(converted.config.Cmd, ['/bin/beta']);

    const viaOci = fresh('from-oci-archive');
    await skopeo(
      '--dest-oci-accept-uncompressed-layers',
      `oci-archive:${one}`,
      `oci:${viaOci}:beta`,
    );
    const o = await ociDirImage(viaOci);
    assert.equal(o.config, beta.configDigest);
    assert.equal(o.manifest, beta.manifestDigest);

    // Several images: skopeo picks one by name from manifest.json, and by ref from index.json.
    const two = fresh('skopeo-two.tar');
    await writeTo(two, src, [saveImage(alpha, ['alpha:1']), saveImage(beta, ['beta:2'])]);
    const pickDocker = fresh('pick-docker');
    await skopeo(`docker-archive:${two}:alpha:1`, `oci:${pickDocker}:x`);
    assert.equal((await ociDirImage(pickDocker)).layers, alpha.layers.length);
    // The dir: transport keeps the schema 2 manifest and the config as they were.
    const dir = fresh('pick-dir');
    await skopeo(`docker-archive:${two}:alpha:1`, `dir:${dir}`);
    const m = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as {
      config: { digest: string };
      layers: { digest: string }[];
    };
    assert.equal(m.config.digest, alpha.configDigest);
    // skopeo's docker-archive source serves layers uncompressed, by diff id.
    assert.deepEqual(
      m.layers.map((l) => l.digest),
      alpha.layers.map((l) => l.diffId),
    );
    const pickOci = fresh('pick-oci');
    await skopeo(`oci-archive:${two}:2`, `oci:${pickOci}:x`);
    assert.equal((await ociDirImage(pickOci)).config, beta.configDigest);
  });

  it('reads a docker-archive written by skopeo (legacy layout with symlinks)', async () => {
    const file = fresh('skopeo-docker.tar');
    await skopeo(`oci:${layout.dir}:alpha`, `docker-archive:${file}:example.com/alpha:1`);
    const store = await newStore();
    const got = await readFrom(file, store);
    assert.equal(got.length, 1);
    const image = got[0];
    assert.ok(image);
    assert.equal(image.configDigest, alpha.configDigest);
    assert.equal(image.manifest, undefined);
    assert.deepEqual(image.repoTags, ['example.com/alpha:1']);
    // skopeo stores layers uncompressed: their digests are the diff ids.
    assert.deepEqual(
      image.layers,
      alpha.layers.map((l) => ({ digest: l.diffId, size: l.tar.length, mediaType: DOCKER_TAR })),
    );
    assert.deepEqual(
      await snapshot(store),
      [alpha.configDigest, ...alpha.layers.map((l) => l.diffId)].sort(),
    );
  });

  it('reads an oci-archive written by skopeo, picking this platform from an index', async () => {
    const file = fresh('skopeo-oci.tar');
    await skopeo(`oci:${layout.dir}:alpha`, `oci-archive:${file}:alpha:1`);
    const store = await newStore();
    const got = await readFrom(file, store);
    assert.deepEqual(got, [
      {
        configDigest: alpha.configDigest,
        manifest: { digest: alpha.manifestDigest, mediaType: OCI_MANIFEST },
        layers: layersOf(alpha),
        repoTags: ['alpha:1'],
      },
    ]);

    const multi = fresh('skopeo-multi.tar');
    await skopeo('--all', `oci:${layout.dir}:multi`, `oci-archive:${multi}:example.com/multi:3`);
    const store2 = await newStore();
    const got2 = await readFrom(multi, store2);
    assert.deepEqual(got2, [
      {
        configDigest: multiHost.configDigest,
        manifest: { digest: multiHost.manifestDigest, mediaType: OCI_MANIFEST },
        layers: layersOf(multiHost),
        repoTags: ['example.com/multi:3'],
      },
    ]);
    // The other platform's blobs and the index were not kept.
    assert.deepEqual(
      await snapshot(store2),
      [
        multiHost.manifestDigest,
        multiHost.configDigest,
        ...layersOf(multiHost).map((l) => l.digest),
      ].sort(),
    );
  });

  it('reads a gzipped archive', async () => {
    const src = await newStore();
    await importImage(src, beta);
    const file = fresh('plain.tar');
    await writeTo(file, src, [saveImage(beta, ['beta:2'])]);
    const gz = gzipSync(await readFile(file));
    const store = await newStore();
    const got = await readImageArchive(chunks(gz, 1000), store);
    assert.deepEqual(got, [
      {
        configDigest: beta.configDigest,
        manifest: { digest: beta.manifestDigest, mediaType: OCI_MANIFEST },
        layers: layersOf(beta),
        repoTags: ['beta:2'],
      },
    ]);
  });
});

// --- hand-made archives ---------------------------------------------------------------

interface Legacy {
  readonly layerTar: Buffer;
  readonly config: Buffer;
  readonly entries: Entry[];
}

// A pre-Docker-25 `docker save`: <id>/layer.tar, <config hex>.json, and the second use of
// a layer as a symlink to the first, listed before the file it points to.
function legacyArchive(opts: { diffIds?: number; link?: string; manifest?: string } = {}): Legacy {
  const layerTar = tarball([{ name: 'etc/legacy', body: 'legacy\n' }]);
  const diffId = sha(layerTar);
  const config = Buffer.from(
    JSON.stringify({
      architecture: host.architecture,
      os: 'linux',
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: Array(opts.diffIds ?? 2).fill(diffId) },
    }),
  );
  const id1 = 'a'.repeat(64);
  const id2 = 'b'.repeat(64);
  const manifest =
    opts.manifest ??
    JSON.stringify([
      {
        Config: `${hex(sha(config))}.json`,
        RepoTags: ['legacy:1'],
        Layers: [`${id1}/layer.tar`, `${id2}/layer.tar`],
      },
    ]);
  const entries: Entry[] = [
    { name: `${id2}/`, type: 'dir' },
    { name: `${id2}/VERSION`, body: '1.0' },
    { name: `${id2}/json`, body: '{}' },
    { name: `${id2}/layer.tar`, type: 'symlink', linkname: opts.link ?? `../${id1}/layer.tar` },
    { name: `${id1}/`, type: 'dir' },
    { name: `${id1}/VERSION`, body: '1.0' },
    { name: `${id1}/json`, body: '{}' },
    { name: `${id1}/layer.tar`, body: layerTar },
    { name: `${hex(sha(config))}.json`, body: config },
    { name: 'manifest.json', body: manifest },
    { name: 'repositories', body: JSON.stringify({ legacy: { '1': id2 } }) },
  ];
  return { layerTar, config, entries };
}

async function refused(
  archive: Buffer,
  message: RegExp,
  prepare?: (store: ContentStore) => Promise<void>,
): Promise<void> {
  const store = await newStore();
  await prepare?.(store);
  const before = await snapshot(store);
  await assert.rejects(readImageArchive(chunks(archive), store), (e: unknown) => {
    assert.ok(isBerthError(e, 'IMAGE_INVALID'), `IMAGE_INVALID, got ${String(e)}`);
    assert.match((e as BerthError).message, message);
    return true;
  });
  assert.deepEqual(await snapshot(store), before, 'the store is as it was');
}

describe('readImageArchive on hand-made archives', () => {
  it('reads a legacy archive whose repeated layer is a symlink', async () => {
    const { layerTar, config, entries } = legacyArchive();
    const store = await newStore();
    const got = await readImageArchive(chunks(tarball(entries)), store);
    const layer = { digest: sha(layerTar), size: layerTar.length, mediaType: DOCKER_TAR };
    assert.deepEqual(got, [
      { configDigest: sha(config), layers: [layer, layer], repoTags: ['legacy:1'] },
    ]);
    assert.deepEqual(await snapshot(store), [sha(config), sha(layerTar)].sort());
  });

  it('tells a gzip layer from a plain one by its bytes', async () => {
    const layerTar = tarball([{ name: 'etc/x', body: 'x' }]);
    const gz = gzipSync(layerTar);
    const config = Buffer.from(
      JSON.stringify({ rootfs: { type: 'layers', diff_ids: [sha(layerTar)] } }),
    );
    const archive = tarball([
      { name: 'config.json', body: config },
      { name: 'layer.tar.gz', body: gz },
      {
        name: 'manifest.json',
        body: JSON.stringify([{ Config: 'config.json', RepoTags: null, Layers: ['layer.tar.gz'] }]),
      },
    ]);
    const got = await readImageArchive(chunks(archive), await newStore());
    assert.deepEqual(got, [
      {
        configDigest: sha(config),
        layers: [{ digest: sha(gz), size: gz.length, mediaType: `${DOCKER_TAR}.gzip` }],
        repoTags: [],
      },
    ]);
  });

  it('refuses bad archives and leaves the store as it was', async () => {
    const { layerTar, config, entries } = legacyArchive();
    // A blob the store already has and the archive holds too: it must stay.
    const keepLayer = async (s: ContentStore): Promise<void> => {
      await s.putBytes(layerTar);
    };
    const replace = (name: string, e: Partial<Entry> | undefined): Entry[] =>
      entries.flatMap((x) => (x.name === name ? (e === undefined ? [] : [{ ...x, ...e }]) : [x]));

    // A blob whose content is not what its name says.
    const wrong = Buffer.from('not what the name says');
    await refused(
      tarball([...entries, { name: `blobs/sha256/${hex(sha(config))}`, body: wrong }]),
      /does not match its name/,
      keepLayer,
    );

    // manifest.json names a file the archive does not have.
    await refused(
      tarball(replace(`${'a'.repeat(64)}/layer.tar`, undefined)),
      /Layers\[0\] names .*layer\.tar, which is not a file in the archive/,
      keepLayer,
    );

    // A symlink out of the archive.
    await refused(
      tarball(legacyArchive({ link: '../../../etc/passwd' }).entries),
      /leads outside the archive through a link/,
      keepLayer,
    );
    await refused(
      tarball(legacyArchive({ link: '/etc/passwd' }).entries),
      /link to \/etc\/passwd, outside the archive/,
      keepLayer,
    );

    // Malformed JSON.
    await refused(
      tarball(legacyArchive({ manifest: '[{"Config": ' }).entries),
      /manifest\.json is not valid JSON/,
      keepLayer,
    );

    // A config with a diff id per layer missing.
    await refused(
      tarball(legacyArchive({ diffIds: 1 }).entries),
      /has 1 diff_ids for 2 layers/,
      keepLayer,
    );

    // Neither manifest.json nor index.json.
    await refused(
      tarball(replace('manifest.json', undefined)),
      /neither a manifest\.json nor an index\.json/,
      keepLayer,
    );

    // Not a tar at all, a tar cut short, a corrupt gzip.
    await refused(randomBytes(4096), /not a valid tar stream/);
    const whole = tarball(entries);
    // Cut in a header, and in a body.
    await refused(
      whole.subarray(0, whole.length - 2048 - 700),
      /ends in the middle of a header/,
      keepLayer,
    );
    // (layer.tar's body starts at 6144: seven entries of one or two blocks, and its header)
    await refused(whole.subarray(0, 7000), /not a valid tar stream .*Truncated/, keepLayer);
    const gz = gzipSync(whole);
    const mid = gz.length >> 1;
    gz[mid] = (gz[mid] ?? 0) ^ 0xff;
    await refused(gz, /gzip stream is corrupt|not a valid tar/, keepLayer);

    // Entries that have no place in an image archive, or names that leave it.
    await refused(
      tarball([...entries, { name: 'dev/null', type: 'char', devmajor: 1, devminor: 3 }]),
      /CharacterDevice/,
      keepLayer,
    );
    await refused(tarball([...entries, { name: '../evil', body: 'x' }]), /outside the archive/);
  });

  it('refuses OCI layouts whose descriptors do not match their blobs', async () => {
    const layerTar = tarball([{ name: 'etc/x', body: 'x' }]);
    const config = Buffer.from(
      JSON.stringify({
        architecture: host.architecture,
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [sha(layerTar)] },
      }),
    );
    const manifest = (layerSize: number): Buffer =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: OCI_CONFIG, digest: sha(config), size: config.length },
          layers: [
            {
              mediaType: 'application/vnd.oci.image.layer.v1.tar',
              digest: sha(layerTar),
              size: layerSize,
            },
          ],
        }),
      );
    const oci = (m: Buffer, indexSize = m.length, extra: Entry[] = []): Buffer =>
      tarball([
        { name: 'oci-layout', body: '{"imageLayoutVersion":"1.0.0"}' },
        { name: `blobs/sha256/${hex(sha(layerTar))}`, body: layerTar },
        { name: `blobs/sha256/${hex(sha(config))}`, body: config },
        { name: `blobs/sha256/${hex(sha(m))}`, body: m },
        ...extra,
        {
          name: 'index.json',
          body: JSON.stringify({
            schemaVersion: 2,
            manifests: [
              {
                mediaType: OCI_MANIFEST,
                digest: sha(m),
                size: indexSize,
                annotations: { 'org.opencontainers.image.ref.name': 'oci:1' },
              },
            ],
          }),
        },
      ]);

    const good = manifest(layerTar.length);
    const got = await readImageArchive(chunks(oci(good)), await newStore());
    assert.deepEqual(got, [
      {
        configDigest: sha(config),
        manifest: { digest: sha(good), mediaType: OCI_MANIFEST },
        layers: [
          {
            digest: sha(layerTar),
            size: layerTar.length,
            mediaType: 'application/vnd.oci.image.layer.v1.tar',
          },
        ],
        repoTags: ['oci:1'],
      },
    ]);

    await refused(oci(manifest(layerTar.length + 1)), /is \d+ bytes, not the \d+ its descriptor/);
    await refused(oci(good, good.length - 1), /is \d+ bytes, not the \d+ its descriptor/);
    await refused(
      oci(good, good.length, [{ name: 'blobs/sha256/XYZ', body: 'x' }]),
      /"XYZ" is not a sha256 digest/,
    );
  });

  it('stops when the signal aborts, and leaves the store as it was', async () => {
    const { entries } = legacyArchive();
    const archive = tarball(entries);
    // Waiting for the end, after the layer and config went into the store; and waiting in
    // the middle of the layer's bytes.
    for (const cut of [archive.length - 1024, 7000]) {
      const store = await newStore();
      const before = await snapshot(store);
      const input = new PassThrough();
      input.write(archive.subarray(0, cut));
      const ac = new AbortController();
      const reading = readImageArchive(input, store, { signal: ac.signal });
      let stored = 0;
      setTimeout(() => {
        void store.list().then((l) => {
          stored = l.length;
          ac.abort(new Error('client went away'));
        });
      }, 100);
      await assert.rejects(reading, /client went away/);
      // The layer and the config were in the store before the abort, and are gone.
      assert.equal(stored, cut === 7000 ? 0 : 2);
      assert.deepEqual(await snapshot(store), before);
      assert.equal(input.destroyed, false, 'the input is the caller’s');
      input.destroy();
    }
  });

  it('refuses to save an image whose blob is not in the store, writing nothing', async () => {
    const src = await newStore();
    await importImage(src, alpha);
    await src.remove(alpha.layers[1]?.digest ?? '');
    const out = new PassThrough();
    let written = 0;
    out.on('data', (c: Buffer) => (written += c.length));
    await assert.rejects(
      writeImageArchive(out, src, [saveImage(alpha, ['alpha:1'])]),
      (e: unknown) =>
        isBerthError(e, 'IMAGE_INVALID') && /not in the content store/.test(String(e)),
    );
    assert.equal(written, 0);
    assert.equal(out.destroyed, false);
  });
});
