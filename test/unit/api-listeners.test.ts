// The listener flags of berthd and the host and TLS flags of the client, checked alone.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseHost, tlsFilesFrom } from '../../src/client/index.ts';
import { parseListenAddress, planListeners } from '../../src/daemon/listeners.ts';
import { BerthError } from '../../src/util/errors.ts';

const base = {
  hosts: [],
  socket: undefined,
  defaultSocket: '/run/berth/berth.sock',
  insecureTcp: false,
};
const tls = { tlsCert: '/c.pem', tlsKey: '/k.pem', tlsCa: '/ca.pem' };
const refused = (f: () => unknown, msg: RegExp) =>
  assert.throws(
    f,
    (e: unknown) => e instanceof BerthError && e.code === 'INVALID_ARGUMENT' && msg.test(e.message),
  );

describe('berthd listeners', () => {
  it("parses Docker's -H forms", () => {
    assert.deepEqual(parseListenAddress('unix:///run/x.sock'), {
      kind: 'unix',
      path: '/run/x.sock',
    });
    assert.deepEqual(parseListenAddress('tcp://127.0.0.1:2376'), {
      kind: 'tcp',
      host: '127.0.0.1',
      port: 2376,
    });
    assert.deepEqual(parseListenAddress('tcp://[::1]:2376'), {
      kind: 'tcp',
      host: '::1',
      port: 2376,
    });
    for (const bad of [
      'tcp://h',
      'tcp://h:0',
      'tcp://h:70000',
      'tcp://h:1/x',
      'tcp://u:p@h:1',
      'unix://rel',
      'http://h:1',
      'h:1',
    ])
      refused(() => parseListenAddress(bad), /Invalid host/);
  });

  it('serves TCP only with all three TLS files, or --insecure-tcp', () => {
    refused(
      () => planListeners({ ...base, hosts: ['tcp://127.0.0.1:2376'] }),
      /without mutual TLS/,
    );
    refused(
      () =>
        planListeners({ ...base, hosts: ['tcp://127.0.0.1:2376'], tlsCert: '/c', tlsKey: '/k' }),
      /--tls-ca missing/,
    );
    refused(() => planListeners({ ...base, ...tls }), /no -H tcp/);
    refused(
      () => planListeners({ ...base, ...tls, hosts: ['tcp://127.0.0.1:1'], insecureTcp: true }),
      /conflicts/,
    );
    const p = planListeners({ ...base, ...tls, hosts: ['tcp://127.0.0.1:2376'] });
    assert.deepEqual(p.tls, { cert: '/c.pem', key: '/k.pem', ca: '/ca.pem' });
    assert.equal(p.tcp.length, 1);
    const plain = planListeners({ ...base, hosts: ['tcp://127.0.0.1:2376'], insecureTcp: true });
    assert.equal(plain.tls, undefined);
  });

  it('takes the socket from --socket, -H unix://, or the default, never two', () => {
    assert.equal(planListeners(base).socket, '/run/berth/berth.sock');
    assert.equal(planListeners({ ...base, socket: '/s' }).socket, '/s');
    assert.equal(planListeners({ ...base, hosts: ['unix:///h'] }).socket, '/h');
    assert.equal(planListeners({ ...base, hosts: ['unix:///h'], socket: '/h' }).socket, '/h');
    refused(() => planListeners({ ...base, hosts: ['unix:///h'], socket: '/s' }), /two sockets/);
    refused(() => planListeners({ ...base, hosts: ['unix:///a', 'unix:///b'] }), /one unix socket/);
  });
});

describe('berth client hosts and TLS', () => {
  it('parses unix and tcp hosts', () => {
    assert.deepEqual(parseHost('unix:///run/b.sock'), { kind: 'unix', socketPath: '/run/b.sock' });
    assert.deepEqual(parseHost('/run/b.sock'), { kind: 'unix', socketPath: '/run/b.sock' });
    assert.deepEqual(parseHost('tcp://10.0.0.1:2376'), {
      kind: 'tcp',
      host: '10.0.0.1',
      port: 2376,
    });
    assert.deepEqual(parseHost('tcp://[::1]:2376'), { kind: 'tcp', host: '::1', port: 2376 });
    for (const bad of ['tcp://h', 'ssh://h', 'h:1', 'tcp://h:1/p'])
      refused(() => parseHost(bad), /Invalid host/);
  });

  it("follows Docker's TLS flags and environment", () => {
    assert.equal(tlsFilesFrom({}, {}), undefined);
    assert.equal(tlsFilesFrom({}, { BERTH_TLS_VERIFY: '' }), undefined);
    assert.equal(tlsFilesFrom({}, { BERTH_TLS_VERIFY: '0' }), undefined);
    assert.deepEqual(tlsFilesFrom({ tlsverify: true }, { BERTH_CERT_PATH: '/certs' }), {
      ca: '/certs/ca.pem',
      cert: '/certs/cert.pem',
      key: '/certs/key.pem',
    });
    assert.deepEqual(
      tlsFilesFrom({}, { BERTH_TLS_VERIFY: '1', BERTH_CERT_PATH: '/certs' })?.ca,
      '/certs/ca.pem',
    );
    // Naming a file is asking for TLS.
    assert.deepEqual(tlsFilesFrom({ tlscacert: '/x/ca.pem' }, { BERTH_CERT_PATH: '/certs' }), {
      ca: '/x/ca.pem',
      cert: '/certs/cert.pem',
      key: '/certs/key.pem',
    });
  });
});
