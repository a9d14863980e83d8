// The Docker API's small parsers for images, volumes and networks, checked alone: query
// booleans and filters, reference patterns, tag parameters, X-Registry-Auth, volume sizes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FastifyRequest } from 'fastify';
import {
  boolFilter,
  dockerFilters,
  globToRegExp,
  labelsExclude,
  labelsMatch,
  qBool,
} from '../../src/api/docker/params.ts';
import { withTag } from '../../src/api/docker/images.ts';
import { registryAuth } from '../../src/api/docker/registry-auth.ts';
import { formatVolumeSize } from '../../src/api/docker/volumes.ts';
import { BerthError } from '../../src/util/errors.ts';

const refused = (f: () => unknown, code: string, msg: RegExp) =>
  assert.throws(
    f,
    (e: unknown) => e instanceof BerthError && e.code === code && msg.test(e.message),
  );

const withHeader = (v: string | undefined) =>
  ({ headers: v === undefined ? {} : { 'x-registry-auth': v } }) as unknown as FastifyRequest;
const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('docker query parameters', () => {
  it('booleans as Go reads them', () => {
    for (const v of ['1', 'true', 'True', 'yes', 'anything'])
      assert.equal(qBool({ k: v }, 'k'), true, v);
    for (const v of [undefined, '', '0', 'false', 'FALSE', 'no', 'none'])
      assert.equal(qBool({ k: v }, 'k'), false, String(v));
    assert.equal(qBool({ k: ['1', '0'] }, 'k'), true, 'the first of a repeated one');
  });

  it('filters in both JSON shapes, keys checked, booleans strict', () => {
    const f = dockerFilters({ filters: '{"label":{"a=b":true},"dangling":["true"]}' }, [
      'label',
      'dangling',
    ]);
    assert.deepEqual(f, { label: ['a=b'], dangling: ['true'] });
    assert.equal(boolFilter(f, 'dangling'), true);
    assert.equal(boolFilter(f, 'nope'), undefined);
    refused(() => dockerFilters({ filters: '{"x":["1"]}' }, ['label']), 'INVALID_ARGUMENT', /"x"/);
    refused(() => dockerFilters({ filters: '[' }, ['label']), 'INVALID_ARGUMENT', /filters/);
    refused(() => boolFilter({ d: ['maybe'] }, 'd'), 'INVALID_ARGUMENT', /true or false/);
    refused(() => boolFilter({ d: ['true', 'false'] }, 'd'), 'INVALID_ARGUMENT', /both/);
  });

  it('labels: every wanted one matches, no unwanted one does', () => {
    const l = { a: 'b', c: '' };
    assert.ok(labelsMatch(l, ['a', 'a=b', 'c=']));
    assert.ok(!labelsMatch(l, ['a', 'x']));
    assert.ok(!labelsMatch(l, ['a=c']));
    assert.ok(labelsExclude(l, ['x', 'a=c']));
    assert.ok(!labelsExclude(l, ['a']));
  });

  it('reference patterns as path.Match', () => {
    const m = (p: string, s: string) => globToRegExp(p).test(s);
    assert.ok(m('mine/*', 'mine/app'));
    assert.ok(!m('mine/*', 'mine/app/deeper'), '* stops at /');
    assert.ok(m('mine/*:v?', 'mine/app:v1'));
    assert.ok(m('busybox', 'busybox'));
    assert.ok(!m('busybox', 'busybox2'));
    assert.ok(m('a[0-9]', 'a7'));
    assert.ok(!m('a[^0-9]', 'a7'));
    assert.ok(m('127.0.0.1:5000/x', '127.0.0.1:5000/x'));
    assert.ok(!m('127.0.0.1:5000/x', '127a0a0a1:5000/x'), 'dots are literal');
    refused(() => globToRegExp('a[b'), 'INVALID_ARGUMENT', /unclosed/);
  });
});

describe('docker image names', () => {
  it("the tag parameter replaces a name's tag or digest; a digest goes after @", () => {
    assert.equal(withTag('busybox', 'v1'), 'busybox:v1');
    assert.equal(withTag('busybox:old', 'v1'), 'busybox:v1');
    assert.equal(withTag('127.0.0.1:5000/a/b', 'v1'), '127.0.0.1:5000/a/b:v1');
    assert.equal(withTag('127.0.0.1:5000/a/b:x', 'v1'), '127.0.0.1:5000/a/b:v1');
    const d = `sha256:${'a'.repeat(64)}`;
    assert.equal(withTag('127.0.0.1:5000/a/b', d), `127.0.0.1:5000/a/b@${d}`);
    assert.equal(withTag(`x@${d}`, 'v2'), 'x:v2');
  });
});

describe('X-Registry-Auth', () => {
  it('username and password, or auth; none when empty', () => {
    assert.equal(registryAuth(withHeader(undefined)), undefined);
    assert.equal(registryAuth(withHeader('')), undefined);
    assert.equal(registryAuth(withHeader(b64url({}))), undefined, "the CLI's {} is no credentials");
    assert.deepEqual(
      registryAuth(
        withHeader(b64url({ username: 'alice', password: 'p:w', serveraddress: 'reg:5000' })),
      ),
      { username: 'alice', password: 'p:w', serverAddress: 'reg:5000' },
    );
    assert.deepEqual(
      registryAuth(withHeader(b64url({ auth: Buffer.from('bob:s3:cret').toString('base64') }))),
      { username: 'bob', password: 's3:cret' },
    );
    // Standard base64 with padding reads the same.
    assert.deepEqual(
      registryAuth(
        withHeader(
          Buffer.from(JSON.stringify({ username: 'u', password: 'p' })).toString('base64'),
        ),
      ),
      { username: 'u', password: 'p' },
    );
  });

  it('refuses what is not an AuthConfig, and tokens it cannot use', () => {
    refused(() => registryAuth(withHeader('!!!')), 'INVALID_ARGUMENT', /X-Registry-Auth/);
    refused(() => registryAuth(withHeader(b64url('str'))), 'INVALID_ARGUMENT', /object/);
    refused(
      () => registryAuth(withHeader(b64url({ username: 1 }))),
      'INVALID_ARGUMENT',
      /username/,
    );
    refused(
      () => registryAuth(withHeader(b64url({ identitytoken: 'tok' }))),
      'NOT_IMPLEMENTED',
      /token/,
    );
  });
});

describe('docker volume sizes', () => {
  it('the largest unit that states the size exactly', () => {
    assert.equal(formatVolumeSize(16 * 1024 ** 2), '16m');
    assert.equal(formatVolumeSize(1024 ** 3), '1g');
    assert.equal(formatVolumeSize(1536 * 1024 ** 2), '1536m');
    assert.equal(formatVolumeSize(3 * 1024 ** 4), '3t');
    assert.equal(formatVolumeSize(1000), '1000');
  });
});
