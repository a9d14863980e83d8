import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  familiarReference,
  formatReference,
  parseDigest,
  parseReference,
  registryHost,
} from '../../src/images/reference.ts';
import { BerthError } from '../../src/util/errors.ts';

const D = `sha256:${'a'.repeat(64)}`;

function rejects(s: string) {
  assert.throws(
    () => parseReference(s),
    (e: unknown) => e instanceof BerthError && e.code === 'INVALID_ARGUMENT',
    `${s} is rejected`,
  );
}

describe('parseReference (docker normalisation)', () => {
  it('puts a bare name under docker.io/library with tag latest', () => {
    assert.deepEqual(parseReference('busybox'), {
      registry: 'docker.io',
      repository: 'library/busybox',
      tag: 'latest',
      digest: undefined,
    });
    assert.equal(formatReference(parseReference('busybox')), 'docker.io/library/busybox:latest');
  });

  it('keeps user repositories on docker.io without library/', () => {
    const r = parseReference('user/app:1.0');
    assert.equal(r.registry, 'docker.io');
    assert.equal(r.repository, 'user/app');
    assert.equal(r.tag, '1.0');
  });

  it('takes a first component with a dot, a port or localhost as the registry', () => {
    assert.deepEqual(parseReference('host:5000/x:tag'), {
      registry: 'host:5000',
      repository: 'x',
      tag: 'tag',
      digest: undefined,
    });
    assert.equal(parseReference('ghcr.io/o/r/s').registry, 'ghcr.io');
    assert.equal(parseReference('localhost/app').registry, 'localhost');
    assert.equal(parseReference('127.0.0.1:5000/a/b').repository, 'a/b');
    assert.equal(parseReference('[::1]:5000/app').registry, '[::1]:5000');
    // An upper-case first component can only be a host.
    assert.equal(parseReference('Registry/app').registry, 'Registry');
  });

  it('maps index.docker.io to docker.io and docker.io/x to library/x', () => {
    assert.equal(
      formatReference(parseReference('index.docker.io/busybox')),
      'docker.io/library/busybox:latest',
    );
    assert.equal(parseReference('docker.io/busybox').repository, 'library/busybox');
  });

  it('takes a digest, with no default tag, and keeps a tag given beside it', () => {
    const r = parseReference(`busybox@${D}`);
    assert.equal(r.tag, undefined);
    assert.equal(r.digest, D);
    const both = parseReference(`host:5000/app:1@${D}`);
    assert.equal(both.tag, '1');
    assert.equal(both.digest, D);
    assert.equal(formatReference(both), `host:5000/app:1@${D}`);
  });

  it('shows the familiar form as docker does', () => {
    assert.equal(familiarReference(parseReference('docker.io/library/busybox')), 'busybox:latest');
    assert.equal(familiarReference(parseReference('user/app:2')), 'user/app:2');
    assert.equal(
      familiarReference(parseReference(`localhost:5000/app@${D}`)),
      `localhost:5000/app@${D}`,
    );
  });

  it('refuses what docker refuses', () => {
    rejects('');
    rejects('Busybox');
    rejects('docker.io/Library/busybox');
    rejects('a'.repeat(64).replace(/a/g, 'f'));
    rejects('app:');
    rejects('app@sha256:abc');
    rejects('app@md5:0123456789abcdef0123456789abcdef');
    rejects(`host:5000/${'a'.repeat(250)}`);
    rejects('-host/app');
    rejects('a//b');
  });

  it('maps Docker Hub to its API host', () => {
    assert.equal(registryHost('docker.io'), 'registry-1.docker.io');
    assert.equal(registryHost('127.0.0.1:5000'), '127.0.0.1:5000');
  });
});

describe('parseDigest', () => {
  it('accepts sha256 and sha512 of the right length only', () => {
    assert.deepEqual(parseDigest(D), { algorithm: 'sha256', hex: 'a'.repeat(64) });
    assert.equal(parseDigest(`sha512:${'0'.repeat(128)}`).algorithm, 'sha512');
    assert.throws(() => parseDigest(`sha256:${'a'.repeat(63)}`));
    assert.throws(() => parseDigest(`sha256:${'A'.repeat(64)}`));
    assert.throws(() => parseDigest(`sha1:${'a'.repeat(40)}`));
  });
});
