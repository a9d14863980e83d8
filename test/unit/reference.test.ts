import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatImageRef, parseImageRef } from '../../src/images/reference.ts';
import { BerthError } from '../../src/util/errors.ts';

function assertInvalid(s: string, field = 'image') {
  assert.throws(
    () => parseImageRef(s, field),
    (e: unknown) => {
      assert.ok(e instanceof BerthError, `${s} throws a BerthError`);
      assert.equal(e.code, 'INVALID_ARGUMENT');
      assert.deepEqual(e.details, { field });
      return true;
    },
    `${s} is rejected`,
  );
}

describe('parseImageRef', () => {
  it('defaults the tag to latest', () => {
    assert.deepEqual(parseImageRef('alpine'), { repo: 'alpine', tag: 'latest' });
    assert.deepEqual(parseImageRef('library/alpine'), { repo: 'library/alpine', tag: 'latest' });
  });

  it('splits an explicit tag', () => {
    assert.deepEqual(parseImageRef('alpine:3.20'), { repo: 'alpine', tag: '3.20' });
    assert.deepEqual(parseImageRef('my-org/my_app:v1.2.3-rc_1'), {
      repo: 'my-org/my_app',
      tag: 'v1.2.3-rc_1',
    });
  });

  it('treats a registry port as part of the repo, not a tag', () => {
    assert.deepEqual(parseImageRef('localhost:5000/app'), {
      repo: 'localhost:5000/app',
      tag: 'latest',
    });
    assert.deepEqual(parseImageRef('registry.example.com:443/team/app:1.0'), {
      repo: 'registry.example.com:443/team/app',
      tag: '1.0',
    });
  });

  it('accepts registry hosts and deep paths', () => {
    assert.deepEqual(parseImageRef('ghcr.io/owner/repo/sub:edge'), {
      repo: 'ghcr.io/owner/repo/sub',
      tag: 'edge',
    });
  });

  it('accepts a 128-character tag and rejects a 129-character one', () => {
    const t128 = 'a'.repeat(128);
    assert.equal(parseImageRef(`app:${t128}`).tag, t128);
    assertInvalid(`app:${t128}a`);
  });

  it('rejects upper-case names', () => {
    assertInvalid('Alpine');
    assertInvalid('library/Alpine:latest');
  });

  it('rejects malformed names', () => {
    assertInvalid('');
    assertInvalid('-app');
    assertInvalid('app-');
    assertInvalid('a//b');
    assertInvalid('/app');
    assertInvalid('app/');
    assertInvalid('my app');
    assertInvalid('app@sha256:abcd');
  });

  it('rejects bad tags', () => {
    assertInvalid('app:');
    assertInvalid('app:-x');
    assertInvalid('app:.x');
    assertInvalid('app:a+b');
    assertInvalid('app:a:b');
  });

  it('names the given field in the error', () => {
    assertInvalid('Bad', 'repo');
  });

  it('round-trips through formatImageRef', () => {
    assert.equal(formatImageRef(parseImageRef('alpine')), 'alpine:latest');
    assert.equal(formatImageRef(parseImageRef('localhost:5000/a:b')), 'localhost:5000/a:b');
  });
});
