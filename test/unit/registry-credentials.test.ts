import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CredentialStore, normalizeRegistry } from '../../src/images/credentials.ts';
import { RegistryClient } from '../../src/images/registry.ts';
import { BerthError } from '../../src/util/errors.ts';
import { FakeRegistry } from './registry-fake.ts';

let dir = '';
before(async () => {
  dir = await mkdtemp('/tmp/bt-creds-');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('normalizeRegistry', () => {
  it('reads the forms docker login takes', () => {
    assert.equal(normalizeRegistry('https://index.docker.io/v1/'), 'docker.io');
    assert.equal(normalizeRegistry('registry-1.docker.io'), 'docker.io');
    assert.equal(normalizeRegistry('http://127.0.0.1:5000/'), '127.0.0.1:5000');
    assert.equal(normalizeRegistry('Ghcr.io'), 'ghcr.io');
    assert.throws(() => normalizeRegistry('not a host'), /Invalid registry/);
  });
});

describe('CredentialStore', () => {
  it('saves only credentials the registry accepts, mode 0600, and logs out', async () => {
    const reg = await new FakeRegistry({ auth: 'bearer', users: { alice: 'pw' } }).start();
    const client = new RegistryClient();
    const store = new CredentialStore(dir);
    try {
      await assert.rejects(
        store.login(reg.host, 'alice', 'wrong', client),
        (e: unknown) => e instanceof BerthError && e.code === 'REGISTRY_AUTH_FAILED',
      );
      assert.equal(existsSync(store.file), false, 'nothing saved after a failed login');
      await store.login(`http://${reg.host}/`, 'alice', 'pw', client);
      assert.equal(statSync(store.file).mode & 0o777, 0o600);
      assert.deepEqual(await store.get(reg.host), { username: 'alice', password: 'pw' });
      const saved = JSON.parse(readFileSync(store.file, 'utf8')) as {
        auths: Record<string, { auth: string }>;
      };
      assert.equal(saved.auths[reg.host]?.auth, Buffer.from('alice:pw').toString('base64'));
      assert.deepEqual(await store.registries(), [reg.host]);
      assert.equal(await store.logout(reg.host, client), true);
      assert.equal(await store.get(reg.host), undefined);
      assert.equal(await store.logout(reg.host, client), false);
      assert.equal(statSync(store.file).mode & 0o777, 0o600);
    } finally {
      client.close();
      await reg.stop();
    }
  });

  it('keeps concurrent logins to different registries', async () => {
    const regs = await Promise.all(
      [1, 2, 3].map(() => new FakeRegistry({ auth: 'basic', users: { u: 'p' } }).start()),
    );
    const client = new RegistryClient();
    const store = new CredentialStore(dir);
    try {
      await Promise.all(regs.map((r) => store.login(r.host, 'u', 'p', client)));
      for (const r of regs)
        assert.deepEqual(await store.get(r.host), { username: 'u', password: 'p' });
    } finally {
      client.close();
      await Promise.all(regs.map((r) => r.stop()));
    }
  });

  it('refuses empty fields and a colon in the username', async () => {
    const store = new CredentialStore(join(dir, 'none'));
    const client = new RegistryClient();
    await assert.rejects(store.login('r:1', '', 'p', client), /Invalid username/);
    await assert.rejects(store.login('r:1', 'a:b', 'p', client), /Invalid username/);
    await assert.rejects(store.login('r:1', 'a', '', client), /Invalid password/);
    client.close();
  });
});
