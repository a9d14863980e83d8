import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  basicAuthorization,
  parseChallenges,
  parseTokenResponse,
  pickChallenge,
  pullScope,
  TokenCache,
  tokenRequestUrl,
} from '../../src/images/registry-auth.ts';

describe('parseChallenges', () => {
  it('reads a Bearer challenge with quoted parameters holding commas', () => {
    const [c] = parseChallenges(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push"',
    );
    assert.deepEqual(c, {
      scheme: 'bearer',
      params: {
        realm: 'https://auth.docker.io/token',
        service: 'registry.docker.io',
        scope: 'repository:library/busybox:pull,push',
      },
    });
  });

  it('reads several challenges in one value and across values', () => {
    const cs = parseChallenges([
      'Basic realm="x", Bearer realm="https://a/t", error="invalid_token"',
      'Negotiate',
    ]);
    assert.deepEqual(
      cs.map((c) => c.scheme),
      ['basic', 'bearer', 'negotiate'],
    );
    assert.equal(cs[1]?.params['error'], 'invalid_token');
  });

  it('handles escapes, unquoted values, odd spacing and case', () => {
    const [c] = parseChallenges('BEARER  Realm = "a\\"b" ,service=svc,  scope="s"');
    assert.equal(c?.scheme, 'bearer');
    assert.deepEqual(c?.params, { realm: 'a"b', service: 'svc', scope: 's' });
  });

  it('survives token68 and empty input', () => {
    assert.deepEqual(parseChallenges(undefined), []);
    assert.deepEqual(parseChallenges(''), []);
    assert.deepEqual(
      parseChallenges('Basic abc==').map((c) => c.scheme),
      ['basic'],
    );
  });

  it('prefers bearer with a realm, then basic', () => {
    assert.equal(
      pickChallenge(parseChallenges('Basic realm="r", Bearer realm="https://t"'))?.scheme,
      'bearer',
    );
    assert.equal(
      pickChallenge(parseChallenges('Bearer service="s", Basic realm="r"'))?.scheme,
      'basic',
    );
    assert.equal(pickChallenge(parseChallenges('Negotiate')), undefined);
  });
});

describe('token request and answer', () => {
  it('builds the token URL with service and scopes', () => {
    const [c] = parseChallenges('Bearer realm="https://auth.example/token?x=1",service="reg"');
    assert.ok(c);
    const u = tokenRequestUrl(c, [pullScope('library/busybox')]);
    assert.equal(u.origin, 'https://auth.example');
    assert.equal(u.searchParams.get('x'), '1');
    assert.equal(u.searchParams.get('service'), 'reg');
    assert.deepEqual(u.searchParams.getAll('scope'), ['repository:library/busybox:pull']);
  });

  it('refuses a realm that is no http(s) URL', () => {
    for (const realm of ['not a url', 'file:///etc/passwd']) {
      const [c] = parseChallenges(`Bearer realm="${realm}"`);
      assert.ok(c);
      assert.throws(() => tokenRequestUrl(c, []), /realm/);
    }
  });

  it('reads token or access_token, with at least 60 s of life less a margin', () => {
    const now = Date.parse('2024-01-01T00:00:00Z');
    assert.deepEqual(parseTokenResponse({ token: 't', expires_in: 300 }, now), {
      token: 't',
      expiresAt: now + 290_000,
    });
    assert.deepEqual(parseTokenResponse({ access_token: 'a', expires_in: 5 }, now), {
      token: 'a',
      expiresAt: now + 54_000,
    });
    assert.equal(parseTokenResponse({ token: 't' }, now).expiresAt, now + 54_000);
    const issued = parseTokenResponse(
      { token: 't', expires_in: 600, issued_at: '2023-12-31T23:59:00Z' },
      now,
    );
    assert.equal(issued.expiresAt, now - 60_000 + 590_000);
    assert.throws(() => parseTokenResponse({}, now), /without a token/);
    assert.throws(() => parseTokenResponse(null, now), /no JSON object/);
  });

  it('encodes basic credentials', () => {
    assert.equal(
      basicAuthorization({ username: 'u', password: 'p:w' }),
      `Basic ${Buffer.from('u:p:w').toString('base64')}`,
    );
  });
});

describe('TokenCache', () => {
  const [c] = parseChallenges('Bearer realm="https://t",service="s"');
  assert.ok(c);

  it('shares one fetch among concurrent callers and caches until expiry', async () => {
    const cache = new TokenCache();
    let now = 1000;
    let fetches = 0;
    const key = TokenCache.key('reg', c, 'repository:a:pull');
    const fetcher = async () => {
      fetches++;
      await new Promise((r) => setTimeout(r, 10));
      return { token: `t${fetches}`, expiresAt: now + 100 };
    };
    const got = await Promise.all([1, 2, 3, 4, 5].map(() => cache.fetch(key, () => now, fetcher)));
    assert.deepEqual(got, ['t1', 't1', 't1', 't1', 't1']);
    assert.equal(fetches, 1);
    assert.equal(await cache.fetch(key, () => now, fetcher), 't1');
    now += 100;
    assert.equal(await cache.fetch(key, () => now, fetcher), 't2');
    cache.invalidate(key);
    assert.equal(await cache.fetch(key, () => now, fetcher), 't3');
  });

  it('keeps scopes apart and forgets a registry', async () => {
    const cache = new TokenCache();
    const k1 = TokenCache.key('reg', c, 'repository:a:pull');
    const k2 = TokenCache.key('reg', c, 'repository:b:pull');
    const k3 = TokenCache.key('other', c, 'repository:a:pull');
    await cache.fetch(
      k1,
      () => 0,
      async () => ({ token: 'a', expiresAt: 10 }),
    );
    await cache.fetch(
      k2,
      () => 0,
      async () => ({ token: 'b', expiresAt: 10 }),
    );
    await cache.fetch(
      k3,
      () => 0,
      async () => ({ token: 'c', expiresAt: 10 }),
    );
    assert.equal(cache.get(k1, 0), 'a');
    assert.equal(cache.get(k2, 0), 'b');
    cache.forget('reg');
    assert.equal(cache.get(k1, 0), undefined);
    assert.equal(cache.get(k2, 0), undefined);
    assert.equal(cache.get(k3, 0), 'c');
  });

  it('does not cache a failed fetch', async () => {
    const cache = new TokenCache();
    const key = TokenCache.key('reg', c, 's');
    await assert.rejects(
      cache.fetch(
        key,
        () => 0,
        async () => Promise.reject(new Error('boom')),
      ),
      /boom/,
    );
    assert.equal(
      await cache.fetch(
        key,
        () => 0,
        async () => ({ token: 'ok', expiresAt: 10 }),
      ),
      'ok',
    );
  });
});
