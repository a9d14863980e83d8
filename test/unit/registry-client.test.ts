// RegistryClient's logic against a fake registry on loopback: challenges and tokens,
// platform selection, digests, resuming a cut transfer, refusing bad bytes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { RegistryClient } from '../../src/images/registry.ts';
import { parseReference } from '../../src/images/reference.ts';
import { BerthError } from '../../src/util/errors.ts';
import { addImage, FakeRegistry, sha256 } from './registry-fake.ts';

let dir = '';
before(async () => {
  dir = await mkdtemp('/tmp/bt-regunit-');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function isCode(code: string, re?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof BerthError, `a BerthError, not ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return true;
  };
}

async function withRegistry(
  fake: FakeRegistry,
  fn: (client: RegistryClient, reg: FakeRegistry) => Promise<void>,
  clientOpts: ConstructorParameters<typeof RegistryClient>[0] = {},
): Promise<void> {
  await fake.start();
  const client = new RegistryClient({ retryDelayMs: 5, ...clientOpts });
  try {
    await fn(client, fake);
  } finally {
    client.close();
    await fake.stop();
  }
}

const ref = (reg: FakeRegistry, rest: string) => parseReference(`${reg.host}/${rest}`);

describe('RegistryClient.resolve', () => {
  it('resolves a tag to manifest, config and layers, and the same by digest', () =>
    withRegistry(new FakeRegistry(), async (client, reg) => {
      const img = addImage(reg, 'v1', [Buffer.from('layer one'), Buffer.from('layer two')]);
      const r = await client.resolve(ref(reg, 'app:v1'));
      assert.equal(r.manifestDigest, img.manifest.digest);
      assert.equal(r.digest, img.manifest.digest);
      assert.equal(r.index, undefined);
      assert.deepEqual(
        r.layers.map((l) => l.digest),
        img.layers.map((l) => l.digest),
      );
      assert.equal(r.config.rootfs.diff_ids.length, 2);
      assert.deepEqual(r.platform, { os: 'linux', architecture: 'amd64' });
      const byDigest = await client.resolve(ref(reg, `app@${img.manifest.digest}`));
      assert.equal(byDigest.manifestDigest, img.manifest.digest);
    }));

  it('selects the platform from an index, by default the host', () =>
    withRegistry(new FakeRegistry(), async (client, reg) => {
      const amd = addImage(reg, 'amd', [Buffer.from('amd')]);
      const arm = addImage(reg, 'arm', [Buffer.from('arm')], {
        os: 'linux',
        architecture: 'arm64',
      });
      const index = reg.addManifest(
        {
          schemaVersion: 2,
          mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json',
          manifests: [
            {
              mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
              ...arm.manifest,
              platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
            },
            {
              mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
              ...amd.manifest,
              platform: { os: 'linux', architecture: 'amd64' },
            },
          ],
        },
        'application/vnd.docker.distribution.manifest.list.v2+json',
        'multi',
      );
      const host = await client.resolve(ref(reg, 'app:multi'));
      if (process.arch === 'x64') assert.equal(host.manifestDigest, amd.manifest.digest);
      assert.equal(host.digest, index.digest);
      assert.equal(host.index?.digest, index.digest);
      const a = await client.resolve(ref(reg, 'app:multi'), 'linux/arm64');
      assert.equal(a.manifestDigest, arm.manifest.digest);
      assert.deepEqual(a.platform, { os: 'linux', architecture: 'arm64' });
      await assert.rejects(
        client.resolve(ref(reg, 'app:multi'), 'linux/s390x'),
        isCode('MANIFEST_UNKNOWN', /linux\/s390x.*linux\/arm64, linux\/amd64/),
      );
      // A single-platform image is refused only for a platform asked for by name.
      await assert.rejects(
        client.resolve(ref(reg, 'app:amd'), 'linux/arm64'),
        isCode('MANIFEST_UNKNOWN', /wanted linux\/arm64, it is linux\/amd64/),
      );
    }));

  it('checks the digest of a manifest pulled by digest and the registry header', () =>
    withRegistry(new FakeRegistry(), async (client, reg) => {
      const img = addImage(reg, 'v1', [Buffer.from('x')]);
      const stored = reg.manifests.get(img.manifest.digest);
      assert.ok(stored);
      // The registry hands out other bytes under the digest.
      const other = Buffer.from(
        stored.body.toString().replace('"schemaVersion":2', '"schemaVersion": 2'),
      );
      reg.manifests.set(img.manifest.digest, {
        ...stored,
        body: other,
        digestHeader: img.manifest.digest,
      });
      await assert.rejects(
        client.resolve(ref(reg, `app@${img.manifest.digest}`)),
        isCode('IMAGE_INVALID', /digest mismatch/),
      );
      reg.manifests.set('v1', { ...stored, digestHeader: sha256('something else') });
      await assert.rejects(
        client.resolve(ref(reg, 'app:v1')),
        isCode('IMAGE_INVALID', /digest mismatch/),
      );
    }));

  it('refuses schema 1, artifacts and unknown layer types', () =>
    withRegistry(new FakeRegistry(), async (client, reg) => {
      reg.addManifest(
        { schemaVersion: 1, name: 'x', fsLayers: [] },
        'application/vnd.docker.distribution.manifest.v1+prettyjws',
        's1',
      );
      await assert.rejects(client.resolve(ref(reg, 'app:s1')), isCode('IMAGE_INVALID', /schema 1/));
      const cfg = reg.addBlob('{}');
      reg.addManifest(
        {
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.cncf.helm.config.v1+json', ...cfg },
          layers: [],
        },
        'application/vnd.oci.image.manifest.v1+json',
        'helm',
      );
      await assert.rejects(
        client.resolve(ref(reg, 'app:helm')),
        isCode('IMAGE_INVALID', /not a container image/),
      );
    }));

  it('says a missing tag is unknown', () =>
    withRegistry(new FakeRegistry(), async (client, reg) => {
      await assert.rejects(
        client.resolve(ref(reg, 'app:nope')),
        isCode('MANIFEST_UNKNOWN', /app:nope not found/),
      );
    }));

  it('retries a 503 and then gives up with REGISTRY_UNAVAILABLE', async () => {
    await withRegistry(new FakeRegistry({ failManifests: 2 }), async (client, reg) => {
      addImage(reg, 'v1', [Buffer.from('x')]);
      await client.resolve(ref(reg, 'app:v1'));
    });
    await withRegistry(
      new FakeRegistry({ failManifests: 100 }),
      async (client, reg) => {
        addImage(reg, 'v1', [Buffer.from('x')]);
        await assert.rejects(
          client.resolve(ref(reg, 'app:v1')),
          isCode('REGISTRY_UNAVAILABLE', /503/),
        );
      },
      { retries: 2 },
    );
  });
});

describe('RegistryClient authentication', () => {
  it('follows a bearer challenge, asking the token server once for parallel requests', () =>
    withRegistry(new FakeRegistry({ auth: 'bearer' }), async (client, reg) => {
      const img = addImage(reg, 'v1', [randomBytes(1000), randomBytes(1000), randomBytes(1000)]);
      const r = await client.resolve(ref(reg, 'app:v1'));
      await Promise.all(
        r.layers.map((l, i) => client.fetchBlob(r.reference, l, join(dir, `bearer-${i}`))),
      );
      assert.equal(reg.tokenRequests, 1);
      const tokenReq = reg.requests.find((q) => q.url.startsWith('/token'));
      assert.match(tokenReq?.url ?? '', /service=fake&scope=repository%3Aapp%3Apull/);
      assert.equal(tokenReq?.authorization, undefined, 'anonymous: no credentials sent');
      assert.ok(
        reg.requests
          .filter((q) => q.url.includes('/blobs/'))
          .every((q) => q.authorization === 'Bearer tok-1'),
      );
      assert.equal(img.layers.length, 3);
    }));

  it('sends basic credentials to the token server and refetches a token the registry rejects', () =>
    withRegistry(
      new FakeRegistry({ auth: 'bearer', users: { alice: 's3cret' }, rejectFirstToken: true }),
      async (client, reg) => {
        addImage(reg, 'v1', [Buffer.from('x')]);
        await client.resolve(ref(reg, 'app:v1'));
        assert.equal(reg.tokenRequests, 2);
        const tokenReq = reg.requests.find((q) => q.url.startsWith('/token'));
        assert.equal(
          tokenReq?.authorization,
          `Basic ${Buffer.from('alice:s3cret').toString('base64')}`,
        );
      },
      { credentials: () => ({ username: 'alice', password: 's3cret' }) },
    ));

  it('gives REGISTRY_AUTH_FAILED for a wrong password at the token server', () =>
    withRegistry(
      new FakeRegistry({ auth: 'bearer', users: { alice: 's3cret' } }),
      async (client, reg) => {
        addImage(reg, 'v1', [Buffer.from('x')]);
        await assert.rejects(
          client.resolve(ref(reg, 'app:v1')),
          isCode('REGISTRY_AUTH_FAILED', /refused the username or password of "alice"/),
        );
      },
      { credentials: () => ({ username: 'alice', password: 'wrong' }) },
    ));

  it('answers a basic challenge with credentials, and asks for a login without', async () => {
    await withRegistry(
      new FakeRegistry({ auth: 'basic', users: { bob: 'pw' } }),
      async (client, reg) => {
        addImage(reg, 'v1', [Buffer.from('x')]);
        await client.resolve(ref(reg, 'app:v1'));
        await client.checkCredentials(reg.host, { username: 'bob', password: 'pw' });
        await assert.rejects(
          client.checkCredentials(reg.host, { username: 'bob', password: 'nope' }),
          isCode('REGISTRY_AUTH_FAILED', /Login to 127\.0\.0\.1:\d+ failed/),
        );
      },
      { credentials: () => ({ username: 'bob', password: 'pw' }) },
    );
    await withRegistry(
      new FakeRegistry({ auth: 'basic', users: { bob: 'pw' } }),
      async (client, reg) => {
        addImage(reg, 'v1', [Buffer.from('x')]);
        await assert.rejects(
          client.resolve(ref(reg, 'app:v1')),
          isCode('REGISTRY_AUTH_FAILED', /berth login/),
        );
      },
    );
  });

  it('drops the Authorization header on a redirect to another origin', async () => {
    const seen: (string | undefined)[] = [];
    const blob = Buffer.from('redirected blob');
    const store = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(200, { 'content-length': blob.length }).end(blob);
    });
    await new Promise<void>((r) => store.listen(0, '127.0.0.1', r));
    const storePort = (store.address() as AddressInfo).port;
    const digest = sha256(blob);
    const front = createServer((req, res) => {
      if (req.headers.authorization !== 'Basic ' + Buffer.from('u:p').toString('base64')) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end();
        return;
      }
      res.writeHead(307, { location: `http://localhost:${storePort}/data` }).end();
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    const client = new RegistryClient({ credentials: () => ({ username: 'u', password: 'p' }) });
    try {
      const r = parseReference(`127.0.0.1:${(front.address() as AddressInfo).port}/app:v1`);
      const dest = join(dir, 'redirected');
      await client.fetchBlob(r, { digest, size: blob.length }, dest);
      assert.deepEqual(readFileSync(dest), blob);
      assert.deepEqual(seen, [undefined]);
    } finally {
      client.close();
      front.closeAllConnections();
      store.closeAllConnections();
      front.close();
      store.close();
    }
  });
});

describe('RegistryClient.fetchBlob', () => {
  it('resumes with Range after the connection is cut, twice, and verifies', () =>
    withRegistry(
      new FakeRegistry({ cutBlobAfter: { 0: 300_000, 1: 500_000 } }),
      async (client, reg) => {
        const data = randomBytes(2_000_000);
        const b = reg.addBlob(data);
        const dest = join(dir, 'resumed');
        const progress: number[] = [];
        await client.fetchBlob(ref(reg, 'app:v1'), b, dest, {
          onProgress: (n, total) => {
            assert.equal(total, data.length);
            progress.push(n);
          },
        });
        assert.deepEqual(readFileSync(dest), data);
        const ranges = reg.requests.filter((q) => q.url.includes('/blobs/')).map((q) => q.range);
        assert.equal(ranges.length, 3);
        assert.equal(ranges[0], undefined);
        assert.match(ranges[1] ?? '', /^bytes=\d+-$/);
        assert.equal(ranges[1], 'bytes=300000-');
        assert.equal(ranges[2], 'bytes=800000-');
        assert.deepEqual(
          [...progress].sort((x, y) => x - y),
          progress,
          'progress never goes back',
        );
        assert.equal(progress.at(-1), data.length);
      },
    ));

  it('starts over when the registry ignores Range', () =>
    withRegistry(
      new FakeRegistry({ cutBlobAfter: { 0: 100_000 }, ignoreRange: true }),
      async (client, reg) => {
        const data = randomBytes(400_000);
        const b = reg.addBlob(data);
        const dest = join(dir, 'norange');
        await client.fetchBlob(ref(reg, 'app:v1'), b, dest);
        assert.deepEqual(readFileSync(dest), data);
      },
    ));

  it('continues from what a partial file already holds', () =>
    withRegistry(new FakeRegistry(), async (client, reg) => {
      const data = randomBytes(300_000);
      const b = reg.addBlob(data);
      const dest = join(dir, 'partial');
      await writeFile(dest, data.subarray(0, 123_456));
      await client.fetchBlob(ref(reg, 'app:v1'), b, dest);
      assert.deepEqual(readFileSync(dest), data);
      assert.equal(reg.requests.find((q) => q.url.includes('/blobs/'))?.range, 'bytes=123456-');
    }));

  it('refuses and removes a blob whose digest does not match', () =>
    withRegistry(new FakeRegistry(), async (client, reg) => {
      const data = randomBytes(50_000);
      const b = reg.addBlob(data);
      reg.blobs.set(b.digest, randomBytes(50_000));
      const dest = join(dir, 'corrupt');
      await assert.rejects(
        client.fetchBlob(ref(reg, 'app:v1'), b, dest),
        isCode('IMAGE_INVALID', /digest mismatch/),
      );
      assert.equal(existsSync(dest), false);
    }));

  it('starts over once when a partial file is not a prefix of the blob', () =>
    withRegistry(new FakeRegistry(), async (client, reg) => {
      const data = randomBytes(10_000);
      const b = reg.addBlob(data);
      const dest = join(dir, 'badprefix');
      await writeFile(dest, randomBytes(5_000));
      await client.fetchBlob(ref(reg, 'app:v1'), b, dest);
      assert.deepEqual(readFileSync(dest), data);
      assert.deepEqual(
        reg.requests.filter((q) => q.url.includes('/blobs/')).map((q) => q.range),
        ['bytes=5000-', undefined],
      );
    }));

  it('refuses a corrupt blob after a fresh start from a bad partial file', () =>
    withRegistry(new FakeRegistry(), async (client, reg) => {
      const b = reg.addBlob(randomBytes(10_000));
      reg.blobs.set(b.digest, randomBytes(10_000));
      const dest = join(dir, 'badprefix2');
      await writeFile(dest, randomBytes(5_000));
      await assert.rejects(
        client.fetchBlob(ref(reg, 'app:v1'), b, dest),
        isCode('IMAGE_INVALID', /digest mismatch/),
      );
      assert.equal(existsSync(dest), false);
    }));

  it('refuses a blob longer than its descriptor says', () =>
    withRegistry(new FakeRegistry(), async (client, reg) => {
      const data = randomBytes(10_000);
      const b = reg.addBlob(data);
      const dest = join(dir, 'long');
      await assert.rejects(
        client.fetchBlob(ref(reg, 'app:v1'), { digest: b.digest, size: 5_000 }, dest),
        isCode('IMAGE_INVALID', /10000 bytes, the manifest says 5000/),
      );
      assert.equal(existsSync(dest), false);
    }));

  it('keeps the part and says REGISTRY_UNAVAILABLE when every attempt is cut without progress', () =>
    withRegistry(
      new FakeRegistry({ cutBlobAfter: { 0: 1000, 1: 0, 2: 0, 3: 0, 4: 0 } }),
      async (client, reg) => {
        const data = randomBytes(100_000);
        const b = reg.addBlob(data);
        const dest = join(dir, 'giveup');
        await assert.rejects(
          client.fetchBlob(ref(reg, 'app:v1'), b, dest),
          isCode('REGISTRY_UNAVAILABLE', /after 3 attempts/),
        );
        assert.equal(readFileSync(dest).length, 1000);
        await client.fetchBlob(ref(reg, 'app:v1'), b, dest);
        assert.deepEqual(readFileSync(dest), data);
      },
      { retries: 2 },
    ));

  it('fetches several blobs in parallel, and queues two calls for one file', () =>
    withRegistry(new FakeRegistry(), async (client, reg) => {
      const blobs = [1, 2, 3, 4, 5].map(() => reg.addBlob(randomBytes(200_000)));
      await Promise.all(
        blobs.map((b, i) => client.fetchBlob(ref(reg, 'app:v1'), b, join(dir, `par-${i}`))),
      );
      const same = join(dir, 'same');
      await Promise.all([
        client.fetchBlob(ref(reg, 'app:v1'), blobs[0] ?? { digest: '', size: 0 }, same),
        client.fetchBlob(ref(reg, 'app:v1'), blobs[0] ?? { digest: '', size: 0 }, same),
      ]);
      assert.equal(sha256(readFileSync(same)), blobs[0]?.digest);
    }));

  it('stops on abort and keeps what arrived', () =>
    withRegistry(new FakeRegistry({ cutBlobAfter: { 0: 1000 } }), async (client, reg) => {
      const b = reg.addBlob(randomBytes(100_000));
      const ac = new AbortController();
      const dest = join(dir, 'aborted');
      const p = client.fetchBlob(ref(reg, 'app:v1'), b, dest, {
        signal: ac.signal,
        onProgress: (n) => n > 0 && ac.abort(),
      });
      await assert.rejects(p, (e: unknown) => e instanceof Error && e.name === 'AbortError');
      assert.equal(readFileSync(dest).length, 1000);
    }));
});

describe('RegistryClient transport', () => {
  it('treats loopback and listed hosts and networks as insecure, nothing else', async () => {
    const c = new RegistryClient({
      insecureRegistries: ['10.0.0.0/8', 'myreg:5000', 'plain.example'],
    });
    assert.equal(await c.isInsecure('127.0.0.1:5000'), true);
    assert.equal(await c.isInsecure('127.1.2.3'), true);
    assert.equal(await c.isInsecure('localhost:5000'), true);
    assert.equal(await c.isInsecure('[::1]:5000'), true);
    assert.equal(await c.isInsecure('10.1.2.3:5000'), true);
    assert.equal(await c.isInsecure('myreg:5000'), true);
    assert.equal(await c.isInsecure('myreg:5001'), false);
    assert.equal(await c.isInsecure('plain.example:443'), true);
    assert.equal(await c.isInsecure('192.168.1.1:5000'), false);
    assert.equal(await c.isInsecure('docker.io'), false);
    const strict = new RegistryClient({ loopbackInsecure: false });
    assert.equal(await strict.isInsecure('127.0.0.1:5000'), false);
    assert.throws(() => new RegistryClient({ insecureRegistries: ['nonsense/8'] }), /CIDR/);
  });

  it('speaks plain HTTP to an insecure registry, and refuses to for a secure one', async () => {
    await withRegistry(new FakeRegistry(), async (client, reg) => {
      addImage(reg, 'v1', [Buffer.from('x')]);
      await client.resolve(ref(reg, 'app:v1'));
    });
    await withRegistry(
      new FakeRegistry(),
      async (client, reg) => {
        addImage(reg, 'v1', [Buffer.from('x')]);
        await assert.rejects(
          client.resolve(ref(reg, 'app:v1')),
          isCode('REGISTRY_UNAVAILABLE', /cannot be reached/),
        );
      },
      { loopbackInsecure: false },
    );
  });

  it('says REGISTRY_UNAVAILABLE when nothing listens', async () => {
    const client = new RegistryClient({ retryDelayMs: 1 });
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    await assert.rejects(
      client.resolve(`127.0.0.1:${port}/app:v1`),
      isCode('REGISTRY_UNAVAILABLE', /ECONNREFUSED/),
    );
    client.close();
  });
});
